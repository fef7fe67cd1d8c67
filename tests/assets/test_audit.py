"""An upload's run looks at its own rows and cheap totals; the audit looks at everything.

Real Delta tables, Milvus Lite, Dagster runs and the `adrag audit` command (in-process).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from adrag_app.cli import main
from adrag_assets.embeddings.sync import PROP_IMAGES_VERSION, synced_images_version
from adrag_assets.settings import Settings
from adrag_assets.tables import EMBEDDINGS
from tests.assets.test_pipeline import ENCODER_ID, reencoded
from tests.support.data import copy_few_pets
from tests.support.helpers import run_pipeline, tables_for


@pytest.fixture
def few_pets(settings: Settings) -> Settings:
    copy_few_pets(settings.raw_dir)
    return settings


def _audit(*args: str) -> tuple[int, list[dict]]:
    out = CliRunner().invoke(main, ["audit", "--json", *args])
    text = out.stdout
    return out.exit_code, json.loads(text[text.index("[") :])


def test_an_upload_embeds_one_photo_and_only_the_audit_reads_old_vectors(few_pets, instance):
    first = run_pipeline(few_pets, instance)
    assert first["image_embeddings"]["mode"] == "full"
    assert first["image_embeddings"]["embedded"] == 40
    t = tables_for(few_pets)
    assert synced_images_version(t) == t.version("images")

    # An old vector goes bad behind adrag's back: three times too long.
    row = t.read("image_embeddings", EMBEDDINGS.names, f"encoder_id = '{ENCODER_ID}'").to_pylist()[
        5
    ]
    corrupt = row["image_id"]
    row["embedding"] = (np.asarray(row["embedding"]) * 3).tolist()
    t.upsert(
        "image_embeddings", pa.Table.from_pylist([row], EMBEDDINGS), ["image_id", "encoder_id"]
    )

    # One upload: the run embeds that photo, reads only the feed's rows, and its check (on
    # the vectors it wrote) passes: run_pipeline asserts every check passed.
    (few_pets.raw_dir / "new").mkdir()
    source = few_pets.raw_dir / "pets" / "beagle_10.jpg"
    (few_pets.raw_dir / "new" / "fresh.jpg").write_bytes(reencoded(source))
    second = run_pipeline(few_pets, instance)
    emb = second["image_embeddings"]
    assert (emb["mode"], emb["embedded"], emb["dagster/row_count"]) == ("changes", 1, 41)
    # The feed's one row (the photo's insert; it has no labels to set): not the 40 others.
    assert emb["images_read"] == 1
    idx = second["image_index"]
    # The index follows image_embeddings' feed, the corrupt write included (it checks ids).
    assert (idx["mode"], idx["upserted"], idx["dagster/row_count"]) == ("incremental", 2, 41)
    assert synced_images_version(t) == t.version("images")

    code, checks = _audit()
    assert code == 1
    by_name = {c["check"]: c for c in checks}
    vectors = by_name["audit_all_vectors"]
    assert not vectors["passed"]
    assert (vectors["metadata"]["vectors"], vectors["metadata"]["bad"]) == (41, 1)
    assert vectors["metadata"]["examples"] == [corrupt]
    assert vectors["metadata"]["max_norm_error"] == pytest.approx(2.0, abs=1e-3)
    ids = by_name["audit_all_ids"]
    assert ids["passed"] and ids["metadata"]["found_missing"] == 0
    assert ids["metadata"]["table_rows"] == ids["metadata"]["index_rows"] == 41

    # Put right, the audit passes.
    row["embedding"] = (np.asarray(row["embedding"]) / 3).tolist()
    t.upsert(
        "image_embeddings", pa.Table.from_pylist([row], EMBEDDINGS), ["image_id", "encoder_id"]
    )
    code, checks = _audit()
    assert code == 0 and all(c["passed"] for c in checks)


def test_a_record_the_feed_cannot_serve_falls_back_to_a_full_reconcile(few_pets, instance):
    run_pipeline(few_pets, instance)
    t = tables_for(few_pets)
    # A record past the table's version (images was recreated): the feed cannot serve it.
    t.set_properties("image_embeddings", {PROP_IMAGES_VERSION: "999"})
    sorted((few_pets.raw_dir / "pets").glob("pug_*.jpg"))[0].unlink()
    meta = run_pipeline(few_pets, instance)
    emb = meta["image_embeddings"]
    assert emb["mode"] == "full" and emb["images_read"] == 39
    assert (emb["embedded"], emb["deleted"], emb["unchanged"]) == (0, 1, 39)
    assert synced_images_version(t) == t.version("images")
    # Back on the feed: nothing changed, nothing read.
    again = run_pipeline(few_pets, instance)["image_embeddings"]
    assert (again["mode"], again["images_read"]) == ("noop", 0)
