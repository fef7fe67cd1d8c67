"""The `adrag` CLI as a user runs it (subprocesses), and the Dagster code location."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from adrag_assets.definitions import defs
from tests.support.data import PETS, REPO
from tests.support.helpers import ADRAG, adrag


def test_cli_ingest_status_search(pets, env):
    (pets.raw_dir / "bad.jpg").write_bytes(b"not a photo")
    out = adrag("ingest", env=env)
    assert "image_index" in out.stdout and "succeeded" in out.stdout

    status = json.loads(adrag("status", "--json", env=env).stdout)
    for key in ("files", "images", "embeddings", "index_rows", "rejected"):
        assert isinstance(status[key], int), key
    assert (status["files"], status["images"], status["embeddings"]) == (297, 296, 296)
    assert (status["index_rows"], status["rejected"]) == (296, 1)
    assert status["encoder_id"] == "random:adrag-tiny@0"
    assert status["milvus_uri"] == str(pets.home / "milvus" / "adrag.db")

    hits = json.loads(adrag("search", "a beagle on a lawn", "-k", "3", "--json", env=env).stdout)
    assert len(hits) == 3
    for h in hits:
        assert set(h) == {"image_id", "path", "score"}
        assert (pets.volume / h["path"]).is_file()
    plain = adrag("search", "a beagle on a lawn", "-k", "2", env=env)
    assert len(plain.stdout.strip().splitlines()) == 2
    assert "NOT semantic" in plain.stderr  # the random encoder is never shown unlabelled

    # The run is recorded in the persistent Dagster instance the UI reads.
    runs = list((pets.home / "dagster").glob("storage/*"))
    assert runs, "the CLI run should be stored under DAGSTER_HOME"


def test_cli_errors_are_clear(env, settings):
    out = adrag("search", "anything", env=env, check=False)
    assert out.returncode == 1
    assert "adrag ingest" in out.stderr and "Traceback" not in out.stderr
    out = adrag("ingest", env={**env, "ADRAG_ENCODER": "ViT-B-32:laion2b_s34b_b79k"}, check=False)
    assert out.returncode == 1
    assert "random:ViT-B-32" in out.stderr and "Traceback" not in out.stderr


def test_cli_bad_settings_end_with_one_error_line(env):
    out = adrag("status", env={**env, "ADRAG_BATCH_SIZE": "abc"}, check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: ADRAG_BATCH_SIZE='abc': expected an integer"
    bad = {**env, "ADRAG_BATCH_SIZE": "abc", "ADRAG_SEARCH_MODE": "fuzzy"}
    out = adrag("search", "a beagle", env=bad, check=False)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.strip().splitlines() == [
        "error: ADRAG_BATCH_SIZE='abc': expected an integer; "
        "ADRAG_SEARCH_MODE='fuzzy': expected hybrid, dense or text"
    ]


def test_definitions_load_and_validate(env):
    repo = defs().get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"raw_photos", "images", "rejected_images", "image_embeddings", "image_index"} <= keys
    graph = repo.asset_graph
    assert graph.get(dg.AssetKey("image_index")).parent_keys == {
        dg.AssetKey("image_embeddings"),
        dg.AssetKey("photo_text"),  # the words read in photos, beside the labels in BM25
    }
    assert graph.get(dg.AssetKey("image_embeddings")).parent_keys == {dg.AssetKey("images")}
    assert graph.get(dg.AssetKey("photo_text")).parent_keys == {dg.AssetKey("images")}
    assert dg.AssetKey("raw_photos") in graph.get(dg.AssetKey("images")).parent_keys
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "DAGSTER_HOME"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "passed validation" in out.stderr + out.stdout


def test_pets_dataset_is_present():
    assert len(list((PETS / "images").glob("*.jpg"))) == 296
    assert shutil.which(ADRAG) or Path(ADRAG).exists()
