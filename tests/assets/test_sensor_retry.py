"""A change set whose ingest failed is asked again: a new run key per attempt, after a backoff
read from the failed runs in the instance, and a skipped tick says why. The sensor runs tick
by tick on a real Dagster instance; its runs are real runs of ingest_job against a real
`milvus-lite server` that is stopped during one of them and started again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from adrag_app.cli.stack import free_port, port_open
from adrag_assets.definitions import defs
from adrag_assets.defs.photos import CHANGE_SET_TAG, JOB_NAME, raw_photos_sensor
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.settings import load_settings
from tests.support.app_home import stop
from tests.support.data import pets_images
from tests.support.helpers import adrag

MILVUS_LITE = Path(sys.executable).parent / "milvus-lite"


class Ticker:
    """Evaluates the sensor like the daemon does: each tick starts from the stored cursor."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None

    def tick(self):
        resources = resources_from_settings(load_settings())
        ctx = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={k: v for k, v in resources.items() if k in ("volume", "tables")},
        )
        result = raw_photos_sensor(ctx)
        self.cursor = ctx.cursor
        return result

    def until_request(self, timeout: float = 60) -> dg.RunRequest:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.tick()
            if isinstance(result, dg.RunRequest):
                return result
            time.sleep(0.3)
        raise AssertionError(f"no run requested in {timeout}s; last tick: {result}")


def upload(settings, n: int, first: int = 0) -> list[str]:
    names = []
    for p in sorted(pets_images().glob("*.jpg"))[first : first + n]:
        shutil.copy(p, settings.raw_dir / p.name)
        then = time.time() - 600  # finished uploads: taken in the tick that sees them
        os.utime(settings.raw_dir / p.name, (then, then))
        names.append(f"raw/{p.name}")
    return names


def start_milvus(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(MILVUS_LITE), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1"]
        + ["--port", str(port)],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"milvus-lite server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)
    return proc


def execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run what the sensor asked for as the daemon would: ingest_job, its config and tags."""
    job = defs().resolve_job_def(JOB_NAME)
    return job.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        raise_on_error=False,
    )


@pytest.fixture
def retry_fast(monkeypatch):
    # Long enough that the tick right after a failed run falls inside the first backoff even
    # on a loaded machine (at 1 s it did not always), short enough to wait out.
    monkeypatch.setenv("ADRAG_RETRY_BASE_SECONDS", "15")
    monkeypatch.setenv("ADRAG_RETRY_MAX_SECONDS", "60")


def test_milvus_down_during_the_run_then_back_catches_up_unattended(
    settings, instance, retry_fast, monkeypatch, tmp_path
):
    port = free_port()
    monkeypatch.setenv("ADRAG_MILVUS_URI", f"http://127.0.0.1:{port}")
    data, log = tmp_path / "milvus-server", tmp_path / "milvus.log"
    milvus = start_milvus(data, port, log)
    try:
        t = Ticker(instance)
        upload(settings, 2)
        assert execute(instance, t.until_request()).success  # a first library, indexed
        assert "no new" in t.tick().skip_message

        new = upload(settings, 3, first=2)
        request = t.until_request()
        assert request.run_key.endswith("-0")
        stop(milvus)  # Milvus goes away while the run does its work
        failed = execute(instance, request)
        assert not failed.success
        assert "image_index" in {
            e.step_key for e in failed.all_events if e.event_type_value == "STEP_FAILURE"
        }

        # The volume is in sync now (images and embeddings were written), the index is not:
        # the sensor asks again, after a backoff it names.
        skip = t.tick()
        assert isinstance(skip, dg.SkipReason), skip
        assert failed.run_id in skip.skip_message and "asking again in" in skip.skip_message

        milvus = start_milvus(data, port, log)
        again = t.until_request(timeout=120)
        assert again.run_key == request.run_key[:-2] + "-1"
        assert again.tags[CHANGE_SET_TAG] == request.tags[CHANGE_SET_TAG]
        assert execute(instance, again).success
        assert "no new" in t.tick().skip_message  # done: nothing asked a third time

        # Unlabelled photos and random weights: only the nearest photos, floor off, find them.
        off = {"ADRAG_RELEVANCE_FLOOR": "off"}
        found = json.loads(adrag("search", "a pet", "-k", "10", "--json", env=off).stdout)
        assert set(new) <= {h["path"] for h in found}
    finally:
        stop(milvus)


def test_failed_change_set_gets_a_new_key_per_attempt_after_a_doubling_backoff(
    settings, instance, monkeypatch
):
    """A run that failed without writing anything leaves the same changes pending."""
    monkeypatch.setenv("ADRAG_RETRY_BASE_SECONDS", "600")
    t = Ticker(instance)
    assert "no new" in t.tick().skip_message  # the first look at an empty volume
    upload(settings, 1)
    first = t.until_request()
    digest = first.tags[CHANGE_SET_TAG]

    def failed_run() -> str:
        run = DagsterRun(
            job_name=JOB_NAME,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.FAILURE,
            tags=first.tags,
        )
        instance.add_run(run)
        return run.run_id

    one = failed_run()
    skip = t.tick()
    assert isinstance(skip, dg.SkipReason)
    assert "failed 1 time(s)" in skip.skip_message and one in skip.skip_message
    assert "asking again in 600s" in skip.skip_message or "asking again in 599s" in (
        skip.skip_message
    )
    two = failed_run()
    skip = t.tick()
    assert "failed 2 time(s)" in skip.skip_message and two in skip.skip_message
    assert "asking again in 1200s" in skip.skip_message or "asking again in 1199s" in (
        skip.skip_message
    )

    monkeypatch.setenv("ADRAG_RETRY_BASE_SECONDS", "0")  # the backoff has passed
    again = t.tick()
    assert isinstance(again, dg.RunRequest)
    assert again.run_key == f"{digest}-2" != first.run_key
    assert again.tags["adrag/attempt"] == "3"
    assert again.run_config == first.run_config
