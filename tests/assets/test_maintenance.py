"""Delta maintenance on real tables: fewer files and bytes, the same rows, and change-feed
consumers (the Milvus index) kept incremental, or rebuilt cleanly when forced."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from click.testing import CliRunner

from adrag_app.cli import main
from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.index import ingest_job
from adrag_assets.defs.maintenance import maintenance_after_ingest, maintenance_job
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.index.sync import sync_index
from adrag_assets.instance import dagster_instance
from adrag_assets.settings import Settings
from adrag_assets.tables import TABLES, Tables
from adrag_assets.tables_maintenance import figures, maintain_tables
from tests.support.data import copy_few_pets
from tests.support.helpers import index_for, run_pipeline, tables_for

KEYS = {"images": "image_id", "volume_files": "path", "rejected_images": "path"}


def rows(tables: Tables) -> dict[str, list[dict]]:
    """Every table's rows, in a fixed order."""
    out = {}
    for name, (schema, _) in TABLES.items():
        key = KEYS.get(name, "image_id")
        t = tables.read(name, schema.names)
        out[name] = sorted(t.to_pylist(), key=lambda r: (r[key], r.get("encoder_id") or ""))
    return out


def grow(settings: Settings, instance: dg.DagsterInstance, index_too: bool = True) -> None:
    """A library built in two ingests, the second with moved and deleted photos: several
    commits, files rewritten by merges, tombstones. ``index_too=False``: the second run
    leaves the index behind the embeddings' change feed."""
    copy_few_pets(settings.raw_dir, ("beagle", "pug"))
    run_pipeline(settings, instance)
    copy_few_pets(settings.raw_dir, ("samoyed",))
    pets = sorted((settings.raw_dir / "pets").glob("*.jpg"))
    for p in pets[:3]:
        p.rename(p.with_name("moved_" + p.name))
    for p in pets[8:11]:  # pugs of the first ingest
        p.unlink()
    (settings.raw_dir / "broken.jpg").write_bytes(b"not a photo")
    if index_too:
        run_pipeline(settings, instance)
    else:
        embed_only(settings, instance)


def embed_only(settings: Settings, instance: dg.DagsterInstance) -> None:
    resources = resources_from_settings(settings)
    assert dg.materialize(
        [images, image_embeddings], resources=resources, instance=instance
    ).success


def observations(instance: dg.DagsterInstance, name: str) -> dict:
    records = instance.fetch_observations(dg.AssetKey(name), limit=1).records
    return {k: v.value for k, v in records[0].asset_observation.metadata.items()}


def test_maintenance_shrinks_the_tables_keeps_rows_and_the_index_incremental(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    grow(settings, instance)
    tables = tables_for(settings)
    before_rows = rows(tables)
    before = {name: figures(tables, name) for name in TABLES}
    assert before["images"].stored_files > before["images"].live_files  # tombstones exist

    result = maintenance_job.execute_in_process(
        resources=resources_from_settings(settings), instance=instance
    )
    assert result.success

    assert rows(tables) == before_rows
    for name in TABLES:
        after = figures(tables, name)
        assert after.stored_files <= before[name].stored_files, name
        assert after.stored_files == after.live_files, name  # nothing but live data left
        assert after.live_files <= 1, name  # small tables: one file each
    img = figures(tables, "images")
    assert img.stored_bytes < before["images"].stored_bytes
    assert img.photo_bytes and img.total_bytes <= 1.1 * img.photo_bytes
    meta = observations(instance, "images")
    assert meta["bytes_after"] == img.total_bytes
    assert meta["photo_bytes"] == img.photo_bytes
    assert meta["delta_version_after"] == img.version
    assert meta["stored_files_before"] == before["images"].stored_files

    # The index was synced before maintenance, so it needed nothing; its next sync reads the
    # feed over maintenance's own commits (no rows) and stays incremental.
    index = index_for(settings)
    enc = load_encoder(settings.encoder, settings.precision, settings.device)
    stats = sync_index(tables, index, enc.encoder_id, settings.encoder, enc.dim)
    index.close()
    assert (stats.mode, stats.upserted, stats.deleted) == ("incremental", 0, 0)
    assert stats.comparison.matches and stats.rows == 21


def test_a_consumer_behind_keeps_its_feed_and_a_forced_vacuum_means_a_clean_rebuild(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    grow(settings, instance, index_too=False)
    tables = tables_for(settings)
    index = index_for(settings)
    enc = load_encoder(settings.encoder, settings.precision, settings.device)
    (collection,) = index.collections()
    synced = index.synced_version(collection)
    assert synced < tables.version("image_embeddings")

    def consumer(_t: Tables) -> int | None:
        return index.synced_version(collection)

    done = {m.table: m for m in maintain_tables(tables, consumer)}
    emb = done["image_embeddings"]
    assert emb.needed_version == synced + 1
    assert emb.retention_hours >= 1
    assert emb.compacted_files > 0  # compaction ran; the files it replaced were kept
    assert done["images"].retention_hours == 0  # no consumer: everything removed goes
    assert done["images"].vacuumed_files > 0
    # The feed the index needs survived: its sync is incremental, with the real changes.
    stats = sync_index(tables, index, enc.encoder_id, settings.encoder, enc.dim)
    assert (stats.mode, stats.upserted, stats.deleted) == ("incremental", 11, 3)
    assert stats.comparison.matches

    # Behind again, then forced: the feed the index needs is vacuumed; its next sync
    # rebuilds from the table, and matches it.
    for p in sorted((settings.raw_dir / "pets").glob("pug_*.jpg"))[:4]:
        p.unlink()
    embed_only(settings, instance)
    forced = {m.table: m for m in maintain_tables(tables, consumer, ignore_consumers=True)}
    assert forced["image_embeddings"].vacuumed_files > 0
    stats = sync_index(tables, index, enc.encoder_id, settings.encoder, enc.dim)
    assert stats.mode == "rebuild"
    assert stats.comparison.matches
    table_ids = tables.read("image_embeddings", ["image_id"]).column("image_id").to_pylist()
    assert index.ids(collection) == set(table_ids)
    assert len(table_ids) == 24 - 3 - 4
    index.close()


def test_the_sensor_asks_for_maintenance_once_enough_commits_piled_up(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The instance `adrag maintain` records in (DAGSTER_HOME), which the sensor reads.
    instance = dagster_instance(settings.dagster_home)
    tables = tables_for(settings)
    for i in range(3):  # three commits, no photos needed
        row = {"path": f"bad{i}.jpg", "size": 1, "mtime_ns": 1, "reason": "empty"}
        tables.upsert(
            "rejected_images", pa.Table.from_pylist([{**row, "rejected_at": None}]), ["path"]
        )
    run = dg.DagsterRun(job_name=ingest_job.name, run_id="an-ingest")
    event = dg.DagsterEvent(
        event_type_value="PIPELINE_SUCCESS", job_name="ingest_job", message="done"
    )
    resources = {"tables": resources_from_settings(settings)["tables"]}

    def evaluate():
        ctx = dg.build_run_status_sensor_context(
            sensor_name="maintenance_after_ingest",
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=run,
            resources=resources,
        )
        return maintenance_after_ingest(ctx)

    commits = tables.version("rejected_images")
    monkeypatch.setenv("ADRAG_MAINTENANCE_AFTER_COMMITS", str(commits + 1))
    assert isinstance(evaluate(), dg.SkipReason)
    monkeypatch.setenv("ADRAG_MAINTENANCE_AFTER_COMMITS", str(commits))
    request = evaluate()
    assert isinstance(request, dg.RunRequest) and request.run_key == "after-an-ingest"

    out = CliRunner().invoke(main, ["maintain", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    (done,) = json.loads(out.output)
    assert done["table"] == "rejected_images"
    assert done["before"]["live_files"] == 3 and done["after"]["live_files"] == 1
    assert done["after"]["stored_files"] == 1
    # After maintenance the count starts again from the version it left.
    monkeypatch.setenv("ADRAG_MAINTENANCE_AFTER_COMMITS", "1")
    assert isinstance(evaluate(), dg.SkipReason)
    text = CliRunner().invoke(main, ["maintain"], catch_exceptions=False).output
    assert text.startswith("rejected_images") and "files 1->1" in text


def test_adrag_ingest_maintains_the_tables_after_a_large_ingest(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = copy_few_pets(settings.raw_dir)
    # "Large" made small: every ingest leaves at least one commit per table it writes.
    monkeypatch.setenv("ADRAG_MAINTENANCE_AFTER_COMMITS", "1")
    out = CliRunner().invoke(main, ["ingest"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "maintenance:" in out.output
    images_after = figures(tables_for(settings), "images")
    assert images_after.stored_files == images_after.live_files == 1
    assert len(tables_for(settings).read("images", ["image_id"])) == n


def test_maintenance_on_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.s3 import moto_s3

    with moto_s3() as s3:
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        s3.client().create_bucket(Bucket="adrag-maint")
        tables = Tables("s3://adrag-maint/tables", {"conditional_put": "etag"})
        for i in range(4):  # four commits of one small file each, then a rewrite
            row = {"path": f"p{i}.jpg", "size": i, "mtime_ns": i, "image_id": f"id{i}"}
            tables.upsert("volume_files", pa.Table.from_pylist([row]), ["path"])
        tables.delete_keys("volume_files", "path", ["p0.jpg"])
        before = figures(tables, "volume_files")
        expected = rows(tables)["volume_files"]
        (done,) = maintain_tables(tables, lambda t: None)
        assert done.table == "volume_files"
        assert rows(tables)["volume_files"] == expected
        assert done.after.live_files == 1 < before.live_files
        assert before.stored_files == 4 > before.live_files  # the delete left a tombstone
        assert done.after.stored_files == 1
        listed = [k for k in s3.keys("adrag-maint") if "/_delta_log/" not in k]
        assert len(listed) == done.after.stored_files
