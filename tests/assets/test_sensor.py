"""The upload sensor, evaluated tick by tick on a real Dagster instance and real tables."""

from __future__ import annotations

import shutil
import uuid

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from adrag_assets.defs.photos import JOB_NAME, raw_photos_sensor
from adrag_assets.defs.resources import resources_from_settings
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


def test_new_files_wait_one_tick_then_run_once(settings, instance):
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

    # Deleted file: seen, settled, requested.
    victim = sorted((pets.raw_dir / "pets").glob("*.jpg"))[0]
    victim.unlink()
    assert isinstance(t.tick(), dg.SkipReason)
    req = t.tick()
    assert isinstance(req, dg.RunRequest)
    assert (req.tags["adrag/changes"], req.tags["adrag/present_files"]) == ("1", "0")

    # After the run, the same volume is in sync again.
    run_pipeline(pets, instance)
    assert "no new" in t.tick().skip_message


def test_half_written_file_waits_until_it_stops_changing(settings, instance):
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


def test_cursor_survives_a_restart(settings, instance):
    t = Ticker(settings, instance)
    shutil.copy(some_photos(1)[0], settings.raw_dir / "a.jpg")
    t.tick()
    restarted = Ticker(settings, instance)
    restarted.cursor = t.cursor  # the daemon stores the cursor; a restart reads it back
    assert isinstance(restarted.tick(), dg.RunRequest)


def test_sidecar_change_alone_requests_a_run(pets, instance):
    run_pipeline(pets, instance)
    t = Ticker(pets, instance)
    assert isinstance(t.tick(), dg.SkipReason)
    with (pets.raw_dir / "labels.csv").open("a") as f:
        f.write("extra.jpg,beagle,dog\n")
    assert isinstance(t.tick(), dg.SkipReason)
    assert isinstance(t.tick(), dg.RunRequest)


def test_tick_while_a_run_is_in_flight_skips_and_says_so(settings, instance):
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
