"""The upload sensor, evaluated tick by tick on a real Dagster instance and real tables."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from adrag_assets.defs.photos import JOB_NAME, images, raw_photos_sensor
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.tables import Tables
from tests.support.data import pets_images
from tests.support.helpers import run_pipeline


class Ticker:
    """Evaluates the sensor like the daemon does: each tick starts from the stored cursor."""

    def __init__(self, settings, instance):
        self.settings, self.instance, self.cursor = settings, instance, None

    def tick(self):
        ctx = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={
                k: v
                for k, v in resources_from_settings(self.settings).items()
                if k in ("volume", "tables")
            },
        )
        result = raw_photos_sensor(ctx)
        self.cursor = ctx.cursor
        return result


def some_photos(n: int):
    return sorted(pets_images().glob("*.jpg"))[:n]


@pytest.fixture
def slow_settle(monkeypatch):
    """Every file counts as young: changes settle only by looking the same twice."""
    monkeypatch.setenv("ADRAG_SETTLE_SECONDS", "3600")


def upload(src, target, age_s: float = 600):
    """A finished upload: the file, with an mtime ``age_s`` seconds ago."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, target)
    then = time.time() - age_s
    os.utime(target, (then, then))


def test_finished_uploads_run_in_the_first_tick(settings, instance):
    t = Ticker(settings, instance)
    for p in some_photos(5):  # a burst of uploads, all finished
        upload(p, settings.raw_dir / p.name)
    req = t.tick()
    assert isinstance(req, dg.RunRequest)
    assert req.tags["adrag/present_files"] == "5"
    assert req.tags["adrag/scope"] == "full"  # a first look: the volume is new to the tables


def test_new_files_wait_one_tick_then_run_once(settings, instance, slow_settle):
    t = Ticker(settings, instance)
    for p in some_photos(5):  # a burst of uploads
        shutil.copy(p, settings.raw_dir / p.name)
    first = t.tick()
    assert isinstance(first, dg.SkipReason) and "settle" in first.skip_message
    second = t.tick()
    assert isinstance(second, dg.RunRequest)
    assert second.tags["adrag/changes"] == "6"  # 5 photos + the sidecar digest entry
    assert second.tags["adrag/present_files"] == "5"
    # A repeated tick before the run shows up asks for the same run_key: no second run.
    again = Ticker(settings, instance)
    again.tick()
    assert again.tick().run_key == second.run_key


def test_in_sync_volume_is_skipped_and_changes_are_seen(pets, instance):
    run_pipeline(pets, instance)
    t = Ticker(pets, instance)
    skip = t.tick()
    assert isinstance(skip, dg.SkipReason) and "no new" in skip.skip_message

    # Deleted file: a delete is complete when seen, so requested at once, as a change set.
    victim = sorted((pets.raw_dir / "pets").glob("*.jpg"))[0]
    victim.unlink()
    req = t.tick()
    assert isinstance(req, dg.RunRequest)
    assert (req.tags["adrag/changes"], req.tags["adrag/present_files"]) == ("1", "0")
    assert req.run_config == {"ops": {"images": {"config": {"paths": [f"raw/pets/{victim.name}"]}}}}

    # After the run, the same volume is in sync again.
    run_pipeline(pets, instance)
    assert "no new" in t.tick().skip_message


def test_half_written_file_waits_until_it_stops_changing(settings, instance, slow_settle):
    t = Ticker(settings, instance)
    src = some_photos(1)[0].read_bytes()
    target = settings.raw_dir / "upload.jpg"
    target.write_bytes(src[: len(src) // 2])
    assert isinstance(t.tick(), dg.SkipReason)
    with target.open("ab") as f:  # the upload goes on between two looks
        f.write(src[len(src) // 2 :])
    still = t.tick()
    assert isinstance(still, dg.SkipReason) and "upload.jpg" in still.skip_message
    assert isinstance(t.tick(), dg.RunRequest)


def test_empty_file_waits_for_a_second_look_however_old(settings, instance):
    t = Ticker(settings, instance)
    (settings.raw_dir / "empty.jpg").touch()
    then = time.time() - 600
    os.utime(settings.raw_dir / "empty.jpg", (then, then))
    assert isinstance(t.tick(), dg.SkipReason)  # an upload may not have written a byte yet
    assert isinstance(t.tick(), dg.RunRequest)


def test_cursor_survives_a_restart(settings, instance, slow_settle):
    t = Ticker(settings, instance)
    shutil.copy(some_photos(1)[0], settings.raw_dir / "a.jpg")
    t.tick()
    restarted = Ticker(settings, instance)
    restarted.cursor = t.cursor  # the daemon stores the cursor; a restart reads it back
    assert isinstance(restarted.tick(), dg.RunRequest)


def test_sidecar_change_alone_requests_a_full_scan(pets, instance, slow_settle):
    run_pipeline(pets, instance)
    t = Ticker(pets, instance)
    assert isinstance(t.tick(), dg.SkipReason)
    with (pets.raw_dir / "labels.csv").open("a") as f:
        f.write("extra.jpg,beagle,dog\n")
    assert isinstance(t.tick(), dg.SkipReason)
    req = t.tick()
    assert isinstance(req, dg.RunRequest)
    assert req.tags["adrag/scope"] == "full" and not req.run_config  # no paths: all of raw/


def test_tick_while_a_run_is_in_flight_skips_and_says_so(settings, instance, slow_settle):
    run = DagsterRun(
        job_name=JOB_NAME, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
    )
    instance.add_run(run)
    t = Ticker(settings, instance)
    shutil.copy(some_photos(1)[0], settings.raw_dir / "b.jpg")
    t.tick()
    skip = t.tick()
    assert isinstance(skip, dg.SkipReason)
    assert "in flight" in skip.skip_message and run.run_id in skip.skip_message
    instance.report_run_canceled(run)
    assert isinstance(t.tick(), dg.RunRequest)


def test_the_run_gets_the_change_set_and_reads_only_those_paths(settings, instance):
    photos = some_photos(5)
    for p in photos[:2]:
        upload(p, settings.raw_dir / p.name)
    resources = {
        k: v for k, v in resources_from_settings(settings).items() if k in ("volume", "tables")
    }

    def run(req: dg.RunRequest) -> dict:
        result = dg.materialize(
            [images], resources=resources, instance=instance, run_config=req.run_config
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [("every_file_accounted_for", True)]
        return {
            k: v.value
            for k, v in result.asset_materializations_for_node("images")[0].metadata.items()
        }

    t = Ticker(settings, instance)
    run(t.tick())  # the first look: a full scan
    assert "no new" in t.tick().skip_message

    upload(photos[2], settings.raw_dir / "new" / "a.jpg")
    req = t.tick()
    assert req.tags["adrag/scope"] == "changes"
    assert req.run_config["ops"]["images"]["config"]["paths"] == ["raw/new/a.jpg"]
    # After the tick, before its run: one more upload and a changed photo.
    upload(photos[3], settings.raw_dir / "new" / "b.jpg")
    upload(photos[4], settings.raw_dir / photos[0].name, age_s=300)
    meta = run(req)
    assert (meta["scope"], meta["files_read"], meta["added"]) == ("changes", 1, 1)
    files = Tables(settings.tables_dir).read("volume_files", ["path", "image_id"]).to_pylist()
    assert sorted(r["path"] for r in files) == sorted(
        ["raw/new/a.jpg", f"raw/{photos[0].name}", f"raw/{photos[1].name}"]
    )
    old_id = next(r["image_id"] for r in files if r["path"] == f"raw/{photos[0].name}")
    assert old_id == hashlib.sha256(photos[0].read_bytes()).hexdigest()  # not re-read

    nxt = t.tick()  # the next tick asks for exactly what that run did not look at
    assert nxt.run_config["ops"]["images"]["config"]["paths"] == sorted(
        ["raw/new/b.jpg", f"raw/{photos[0].name}"]
    )
    meta = run(nxt)
    assert (meta["files_read"], meta["added"], meta["deleted"]) == (2, 2, 1)
    assert "no new" in t.tick().skip_message
