"""Each vector records the code that made it; rows of an older version are re-embedded in
bounded batches, and a table written before versions were recorded upgrades in place
without re-embedding photos the decode fix leaves as they were. Real Delta tables, the tiny
real CLIP, a real Dagster instance."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import numpy as np
import pyarrow as pa
from deltalake import write_deltalake
from PIL import Image

from adrag_assets.defs.embeddings import CURRENT_CHECK, image_embeddings
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.embeddings.sync import count_stale, sync_embeddings
from adrag_assets.embeddings.versions import EMBED_VERSION, changed_by_decode_2
from adrag_assets.images.sync import sync_images
from adrag_assets.tables import CDF, Tables
from adrag_assets.volume import open_volume
from tests.support.data import TEST_ENCODER, pets_images
from tests.support.helpers import adrag

ORIENTATION = 0x0112


def library(settings, plain: int = 5) -> dict[str, str]:
    """``plain`` ordinary JPEGs, one JPEG stored sideways with an EXIF orientation tag and
    one PNG cut-out with transparency: {path: kind}."""
    photos = sorted(pets_images().glob("*.jpg"))
    kinds = {}
    for p in photos[:plain]:
        shutil.copy(p, settings.raw_dir / p.name)
        kinds[f"raw/{p.name}"] = "plain"
    with Image.open(photos[plain]) as im:
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        im.convert("RGB").save(settings.raw_dir / "sideways.jpg", exif=exif)
    kinds["raw/sideways.jpg"] = "exif"
    with Image.open(photos[plain + 1]) as im:
        cut = im.convert("RGBA")
        alpha = Image.new("L", cut.size, 255)
        alpha.paste(0, (0, 0, cut.width // 2, cut.height))  # the left half transparent
        cut.putalpha(alpha)
        cut.save(settings.raw_dir / "cutout.png")
    kinds["raw/cutout.png"] = "alpha"
    return kinds


def vectors(tables: Tables) -> dict[str, tuple[np.ndarray, str | None]]:
    rows = tables.query(
        "image_embeddings", "SELECT path, embedding, embed_version FROM image_embeddings"
    ).read_all()
    return {
        r["path"]: (np.asarray(r["embedding"], np.float32), r["embed_version"])
        for r in rows.to_pylist()
    }


def as_written_before_versions(tables: Tables) -> None:
    """Rewrite image_embeddings as today's main leaves it: no embed_version column, every
    vector deliberately wrong (so a vector that is re-embedded shows), the sync record kept."""
    old = tables.open("image_embeddings")
    props = {k: v for k, v in tables.properties("image_embeddings").items() if "adrag" in k}
    rows = old.to_pyarrow_table().drop_columns(["embed_version"])
    dim = len(rows.column("embedding")[0].as_py())
    wrong = np.zeros((rows.num_rows, dim), np.float32)
    wrong[:, 0] = 1.0
    rows = rows.set_column(
        rows.schema.get_field_index("embedding"),
        rows.schema.field("embedding"),
        pa.array(list(wrong), pa.list_(pa.float32())),
    )
    shutil.rmtree(tables.uri("image_embeddings"))
    write_deltalake(tables.uri("image_embeddings"), rows, configuration=CDF)
    tables.set_properties("image_embeddings", props)
    assert "embed_version" not in tables.open("image_embeddings").schema().to_arrow().names


def test_header_triage_matches_what_decode_2_changed():
    photo = sorted(pets_images().glob("*.jpg"))[0]
    assert not changed_by_decode_2(photo.read_bytes())
    assert changed_by_decode_2(b"not an image")  # unknown: the safe side


def test_table_from_before_versions_upgrades_in_place(settings):
    kinds = library(settings, plain=5)
    tables = Tables(settings.tables_dir)
    sync_images(open_volume(settings.volume_uri), tables)
    encoder = load_encoder(TEST_ENCODER, "fp32")
    sync_embeddings(tables, encoder)
    fresh = vectors(tables)
    assert {v for _, v in fresh.values()} == {EMBED_VERSION}
    assert count_stale(tables, encoder.encoder_id) == 0

    as_written_before_versions(tables)
    assert count_stale(tables, encoder.encoder_id) == 7  # nothing known: all stale
    out = json.loads(adrag("status", "--json", env={}).stdout)
    assert out["stale"] == 7

    # A bounded batch: 4 rows looked at per run, in image_id order.
    first = sync_embeddings(tables, encoder, reembed_batch=4)
    assert first.mode == "noop" and first.embedded == 0
    assert first.reembedded + first.marked_current == 4
    assert first.stale == 3 == count_stale(tables, encoder.encoder_id)
    second = sync_embeddings(tables, encoder, reembed_batch=4)
    assert second.reembedded + second.marked_current == 3 and second.stale == 0
    # Only the two photos the decode fix changes got a new vector; the plain ones were
    # marked current with their vector untouched (here the deliberately wrong one).
    assert first.reembedded + second.reembedded == 2
    after = vectors(tables)
    for path, kind in kinds.items():
        vec, version = after[path]
        assert version == EMBED_VERSION
        if kind == "plain":
            assert vec[0] == 1.0 and np.count_nonzero(vec) == 1, path
        else:
            np.testing.assert_allclose(vec, fresh[path][0], atol=1e-5, err_msg=path)
    assert json.loads(adrag("status", "--json", env={}).stdout)["stale"] == 0


def test_older_version_is_reembedded_run_by_run_and_shown(settings, instance, monkeypatch):
    library(settings, plain=5)
    monkeypatch.setenv("ADRAG_REEMBED_BATCH", "3")
    resources = resources_from_settings(settings)
    first = dg.materialize([images, image_embeddings], resources=resources, instance=instance)
    assert first.success
    tables = Tables(settings.tables_dir)
    # Vectors an older decode made: every row, whatever its photo.
    rows = tables.open("image_embeddings")
    rows.update({"embed_version": "'decode-1.model-2'"})
    eid = load_encoder(TEST_ENCODER, "fp32").encoder_id
    assert count_stale(tables, eid) == 7

    seen = []
    for _ in range(5):
        result = dg.materialize(
            [image_embeddings], resources=resources, instance=instance, selection=[image_embeddings]
        )
        meta = {
            k: v.value
            for k, v in result.asset_materializations_for_node("image_embeddings")[
                0
            ].metadata.items()
        }
        check = next(
            c for c in result.get_asset_check_evaluations() if c.check_name == CURRENT_CHECK
        )
        seen.append((meta["reembedded"], meta["stale"], check.passed))
        if check.passed:
            break
    assert seen == [(3, 4, False), (3, 1, False), (1, 0, True)]
    failed = next(c for c in result.get_asset_check_evaluations() if c.check_name == CURRENT_CHECK)
    assert failed.severity == dg.AssetCheckSeverity.WARN
    assert {v for _, v in vectors(tables).values()} == {EMBED_VERSION}


def test_the_automation_asks_again_while_stale_rows_are_left(settings, instance, monkeypatch):
    """The condition the daemon evaluates: a run that left stale rows (its check warned)
    makes the next tick request image_embeddings; a run that left none does not."""
    library(settings, plain=2)
    monkeypatch.setenv("ADRAG_REEMBED_BATCH", "3")
    resources = resources_from_settings(settings)
    assert dg.materialize([images, image_embeddings], resources=resources, instance=instance)
    assets = dg.Definitions(assets=[images, image_embeddings], resources=resources)
    key = dg.AssetKey("image_embeddings")
    tick = dg.evaluate_automation_conditions(assets, instance)
    assert tick.get_num_requested(key) == 0

    Tables(settings.tables_dir).open("image_embeddings").update(
        {"embed_version": "'decode-1.model-2'"}
    )
    wanted = []
    for _ in range(3):
        run = dg.materialize([image_embeddings], resources=resources, instance=instance)
        tick = dg.evaluate_automation_conditions(assets, instance, cursor=tick.cursor)
        wanted.append(tick.get_num_requested(key))
        tick = dg.evaluate_automation_conditions(assets, instance, cursor=tick.cursor)
        wanted.append(tick.get_num_requested(key))  # the same run is not asked for twice
    assert run.success
    assert wanted == [1, 0, 0, 0, 0, 0], wanted
