"""The index heals itself: a row count that drifted is repaired in the same run, drift that
keeps the count by the audit, and damaged Milvus data is rebuilt.

Everything is real: the Delta tables, Milvus Lite (a file in this process, or a
`milvus-lite server` process), the Dagster runs and the `adrag` CLI in subprocesses. The
damage is done the way it happens: rows written behind adrag's back through pymilvus, and
random bytes over Milvus' files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from pymilvus import MilvusClient

from adrag_assets.defs.audit import audit_all_ids
from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.index import image_index
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.index.compare import compare_ids
from adrag_assets.index.search import search
from adrag_assets.settings import Settings, load_settings
from tests.support.app_home import _start_milvus, stop
from tests.support.cli import run_adrag
from tests.support.data import TEST_ENCODER, copy_few_pets
from tests.support.helpers import index_for, run_pipeline, tables_for

QUERY = "a beagle on a lawn"
GHOST = "f" * 64  # an id no photo has


@pytest.fixture
def few_pets(settings: Settings) -> Settings:
    copy_few_pets(settings.raw_dir)
    return settings


def _garble(path: Path) -> None:
    """Random bytes over every file of a Milvus Lite folder, of the same sizes."""
    files = [p for p in path.rglob("*") if p.is_file() and p.name != "LOCK"]
    assert files
    for p in files:
        p.write_bytes(os.urandom(max(64, p.stat().st_size)))


def _materialize_index(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInJobResult:
    return dg.materialize(
        [image_index],
        resources=resources_from_settings(settings),
        instance=instance,
        raise_on_error=False,
    )


def _index_meta(result: dg.ExecuteInJobResult) -> dict:
    (mat,) = result.asset_materializations_for_node("image_index")
    return {k: v.value for k, v in mat.metadata.items()}


def _check(result: dg.ExecuteInJobResult, name: str = "index_matches_embeddings"):
    (evaluation,) = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == name
    ]
    return evaluation


def _audit_ids(settings: Settings, instance: dg.DagsterInstance):
    result = dg.materialize(
        [image_embeddings, image_index, audit_all_ids],
        selection=dg.AssetSelection.checks(audit_all_ids),
        resources=resources_from_settings(settings),
        instance=instance,
    )
    assert result.success
    return _check(result, "audit_all_ids")


def test_a_row_count_that_drifted_is_repaired_in_the_ingest_run(few_pets, instance):
    run_pipeline(few_pets, instance)
    index = index_for(few_pets)
    name = index.live_collection()
    ids = index.ids(name)
    lost = sorted(ids)[3:5]
    index.delete(name, lost)  # behind adrag's back; nothing new in the table

    result = _materialize_index(few_pets, instance)
    assert result.success
    meta = _index_meta(result)
    assert (meta["mode"], meta["repaired"]) == ("repair", "2 missing, 0 ghosts")
    check = _check(result)
    assert check.passed and check.metadata["scope"].value == "every id"
    assert index.ids(name) == ids
    index.close()


def test_drift_that_keeps_the_row_count_is_left_to_the_audit_which_repairs_it(few_pets, instance):
    run_pipeline(few_pets, instance)
    index = index_for(few_pets)
    name = index.live_collection()
    ids = index.ids(name)
    tables = tables_for(few_pets)
    lost = sorted(ids)[7]

    # Behind adrag's back: one row deleted, one ghost row added, straight through pymilvus.
    # The ghost carries the query's own vector and words, so it would be search hit #1.
    encoder = load_encoder(TEST_ENCODER, "fp32")
    client = MilvusClient(uri=few_pets.milvus_uri)
    client.delete(name, ids=[lost])
    client.insert(
        name,
        [
            {
                "image_id": GHOST,
                "path": "raw/pets/ghost.jpg",
                "labels": {"breed": "beagle", "species": "dog"},
                "text": "beagle dog lawn",
                "vector": encoder.encode_texts([QUERY])[0].tolist(),
            }
        ],
    )
    client.close()
    assert index.count(name) == len(ids)  # a row count cannot see this drift
    assert search(index, QUERY, k=3)[0].image_id == GHOST
    drift = compare_ids(tables, index, name, encoder.encoder_id)
    assert (drift.missing, drift.ghosts) == ([lost], [GHOST])
    assert drift.table_rows == drift.index_rows and drift.table_digest != drift.index_digest

    # An upload's run checks counts and its own ids: this drift is not its to see.
    result = _materialize_index(few_pets, instance)
    assert result.success
    assert _index_meta(result)["mode"] == "noop"
    check = _check(result)
    assert check.passed and check.metadata["scope"].value == "this run's ids"

    # The audit compares every id: it finds both and repairs them.
    audit = _audit_ids(few_pets, instance)
    assert audit.passed
    meta = {k: v.value for k, v in audit.metadata.items()}
    assert (meta["found_missing"], meta["found_ghosts"]) == (1, 1)
    assert meta["repaired"] == "1 missing, 1 ghosts"
    assert meta["examples"] == [lost, GHOST]
    assert meta["table_digest"] == meta["index_digest"]
    assert index.ids(name) == ids
    hits = search(index, QUERY, k=3)
    assert GHOST not in {h.image_id for h in hits}
    assert all((few_pets.volume / h.path).is_file() for h in hits)

    # Nothing drifted since: the next audit repairs nothing.
    again = _audit_ids(few_pets, instance)
    assert again.passed and again.metadata["repaired"].value == "0 missing, 0 ghosts"
    index.close()


@pytest.mark.parametrize("damage", ["every file garbled", "a file in place of the folder"])
def test_garbled_lite_file_is_moved_aside_and_the_next_ingest_rebuilds(few_pets, env, damage):
    first = run_adrag("ingest", env=env)
    assert first.returncode == 0, first.stderr
    db = Path(few_pets.milvus_uri)
    if damage == "every file garbled":
        _garble(db)
    else:
        for p in sorted(db.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        db.rmdir()
        db.write_bytes(os.urandom(4096))
    broken = {p: p.read_bytes() for p in [db, *db.rglob("*")] if p.is_file()}

    # Until the next ingest, search says what is wrong and what to do, in one line.
    before = run_adrag("search", QUERY, env=env)
    assert before.returncode == 1 and "Traceback" not in before.stderr
    assert "adrag ingest" in before.stderr

    out = run_adrag("ingest", env=env)
    assert out.returncode == 0, out.stderr
    assert "mode=rebuild" in out.stdout and "row_count=40" in out.stdout
    (aside,) = db.parent.glob("adrag.db.broken-*")
    assert f"moved the unreadable Milvus Lite data aside to {aside}" in out.stderr
    assert "Traceback" not in out.stderr
    # Kept, byte for byte: never deleted.
    for p, data in broken.items():
        assert (aside / p.relative_to(db) if p != db else aside).read_bytes() == data

    hits = json.loads(run_adrag("search", QUERY, "--json", env=env).stdout)
    assert len(hits) == 3 and all((few_pets.volume / h["path"]).is_file() for h in hits)


def test_server_drops_and_rebuilds_an_unreadable_collection(few_pets, instance, tmp_path):
    data, log = tmp_path / "milvus-server", tmp_path / "milvus.log"
    data.mkdir()
    server, port = _start_milvus(data, log)
    try:
        env = {**os.environ, "ADRAG_MILVUS_URI": f"http://127.0.0.1:{port}"}
        settings = load_settings(env)
        first = run_pipeline(settings, instance)
        collection = first["image_index"]["collection"]
    finally:
        stop(server)

    # The server is down when its files are damaged; restarted, it cannot read them.
    _garble(data / "collections" / collection)
    server, port = _start_milvus(data, log)
    try:
        env["ADRAG_MILVUS_URI"] = f"http://127.0.0.1:{port}"
        settings = load_settings(env)
        result = _materialize_index(settings, instance)
        assert result.success
        meta = _index_meta(result)
        assert meta["healed"] == f"dropped the unreadable collection {collection}"
        assert (meta["mode"], meta["dagster/row_count"]) == ("rebuild", 40)
        assert _check(result).passed
        index = index_for(settings)
        assert len(search(index, QUERY, k=3)) == 3
        index.close()
    finally:
        stop(server)

    # Its alias list garbled: nothing to repair through the API, so the run fails clearly.
    (data / "aliases.json").write_bytes(os.urandom(64))
    server, port = _start_milvus(data, log)
    try:
        env["ADRAG_MILVUS_URI"] = f"http://127.0.0.1:{port}"
        result = _materialize_index(load_settings(env), instance)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.cause.message
        assert "IndexUnreadable" in message and "move its data folder aside" in message
    finally:
        stop(server)
