"""Runs that die never block the next one.

A run killed with SIGKILL stays STARTED and keeps the writers' pool slot; the next
`adrag ingest` (or the daemon's dead_runs_sensor) marks it failed and frees the slot, never
touching a run whose process is alive. Real processes, a real instance, real kills.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from adrag_assets.dead_runs import recover_dead_runs
from adrag_assets.defs.resources import POOL
from adrag_assets.defs.runs import dead_runs_sensor
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.instance import dagster_instance
from adrag_assets.run_launcher import HostTaggingRunLauncher
from tests.support.data import REPO, TEST_ENCODER, pets_images
from tests.support.helpers import index_for, tables_for
from tests.support.postgres import postgres_server
from tests.support.step_killer import kill_inside_step

BIN = Path(sys.executable).parent
PHOTOS = 60
RERUN_TIMEOUT_S = 300  # a hang fails the test rather than the suite


def wait_until(check, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def slot_holders(instance: dg.DagsterInstance) -> list[str]:
    return [s.run_id for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]


def pending_runs(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return {p.run_id for p in info.pending_steps}


@pytest.mark.parametrize("step", ["images", "image_embeddings", "image_index"])
def test_ingest_killed_inside_a_step_is_recovered_by_the_next_ingest(env, settings, step):
    photos = sorted(pets_images().glob("*.jpg"))[:PHOTOS]
    for p in photos:
        shutil.copy(p, settings.raw_dir / p.name)
    run_env = {**os.environ, **env}
    with dagster_instance(settings.dagster_home) as instance:
        killed = subprocess.Popen(
            [str(BIN / "adrag"), "ingest"],
            env=run_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        run_id = kill_inside_step(killed, settings.dagster_home, step)
        # What the tester found: the dead run looks alive and holds the writers' slot.
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        assert slot_holders(instance) == [run_id]

        again = subprocess.run(
            [str(BIN / "adrag"), "ingest"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=RERUN_TIMEOUT_S,
        )
        out = again.stdout + again.stderr
        assert again.returncode == 0, out
        assert (
            f"recovered run {run_id}: its process {killed.pid} is gone; "
            "marked failed and freed its slot"
        ) in again.stdout, out
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert slot_holders(instance) == []

    # Every photo exactly once in each table and in the index: 0 duplicates, 0 missing.
    expected = sorted({hashlib.sha256(p.read_bytes()).hexdigest() for p in photos})
    encoder_id = EncoderSpec.parse(TEST_ENCODER).encoder_id
    tables = tables_for(settings)
    images = tables.read("images", ["image_id"]).column("image_id").to_pylist()
    embedded = (
        tables.read("image_embeddings", ["image_id"], f"encoder_id = '{encoder_id}'")
        .column("image_id")
        .to_pylist()
    )
    assert sorted(images) == expected
    assert sorted(embedded) == expected
    index = index_for(settings)
    try:
        live = index.live_collection()
        assert index.count(live) == len(expected)  # a duplicate would count twice
        assert sorted(index.ids(live)) == expected
    finally:
        index.close()


def test_dead_runs_are_failed_and_freed_and_live_ones_left_alone(env, settings, tmp_path):
    release = tmp_path / "release"

    def hold(*flags: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.pool_holder", str(release), *flags],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs: list[subprocess.Popen] = []
    with dagster_instance(settings.dagster_home) as instance:
        try:
            # An in-process run tagged with its pid (as `adrag ingest`) takes the slot...
            cli = hold("--tagged")
            procs.append(cli)
            wait_until(lambda: len(slot_holders(instance)) == 1, "the first run's slot")
            (cli_run,) = slot_holders(instance)
            # ... and an untagged one (as a daemon's run worker) queues behind it.
            worker = hold()
            procs.append(worker)
            wait_until(lambda: pending_runs(instance) - {cli_run}, "the second run to queue")
            (worker_run,) = pending_runs(instance) - {cli_run}

            assert recover_dead_runs(instance) == []  # both alive: nothing touched

            cli.kill()
            cli.wait(30)
            recovered = recover_dead_runs(instance)
            assert [(r.run_id, r.pid, r.failed) for r in recovered] == [(cli_run, cli.pid, True)]
            assert instance.get_run_by_id(cli_run).status == dg.DagsterRunStatus.FAILURE
            # The live run was left alone and now gets the slot.
            wait_until(lambda: slot_holders(instance) == [worker_run], "the slot to pass on")
            assert instance.get_run_by_id(worker_run).status == dg.DagsterRunStatus.STARTED

            # The untagged run is judged by the pid of its RUN_START event; the daemon's sensor
            # does the same sweep.
            worker.kill()
            worker.wait(30)
            skip = dead_runs_sensor(dg.build_sensor_context(instance=instance))
            assert f"recovered run {worker_run}: its process {worker.pid} is gone" in (
                skip.skip_message
            )
            assert instance.get_run_by_id(worker_run).status == dg.DagsterRunStatus.FAILURE
            assert slot_holders(instance) == [] and pending_runs(instance) == set()

            # A run marked failed elsewhere (a code server that saw its worker die) whose dead
            # process still holds the slot: the slot is freed, the run left as it is.
            third = hold()
            procs.append(third)
            wait_until(lambda: len(slot_holders(instance)) == 1, "the third run's slot")
            (third_run,) = slot_holders(instance)
            third.kill()
            third.wait(30)
            instance.report_run_failed(instance.get_run_by_id(third_run))
            recovered = recover_dead_runs(instance)
            assert [(r.run_id, r.failed) for r in recovered] == [(third_run, False)]
            assert recovered[0].line.endswith("is gone; freed its slot")
            assert slot_holders(instance) == []

            # With the slot free, a new run goes through.
            release.touch()
            last = hold("--tagged")
            procs.append(last)
            assert last.wait(120) == 0
        finally:
            release.touch()
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(30)


def test_on_postgres_only_runs_launched_from_this_host_are_judged(env, settings, tmp_path):
    """PostgreSQL storage may be shared by machines: a worker's pid is trusted only for a run
    adrag's launcher tagged with this host (a stack stopped mid-run leaves such runs)."""
    release = tmp_path / "release"
    with postgres_server() as url:
        os.environ["ADRAG_DAGSTER_PG_URL"] = url  # Dagster reads it from the environment
        run_env = {**os.environ, **env, "ADRAG_DAGSTER_PG_URL": url}
        procs: list[subprocess.Popen] = []
        try:
            with dagster_instance(settings.dagster_home, postgres=True) as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                assert isinstance(instance.run_launcher, HostTaggingRunLauncher)

                def hold(*flags: str) -> tuple[subprocess.Popen, str]:
                    before = {r.run_id for r in instance.get_runs()}
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "tests.support.pool_holder", str(release), *flags],
                        cwd=REPO,
                        env=run_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    procs.append(proc)
                    started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])

                    def new_run() -> set[str]:
                        return {r.run_id for r in instance.get_runs(started)} - before

                    wait_until(new_run, f"the run of {flags or 'an untagged holder'}")
                    (run_id,) = new_run()
                    return proc, run_id

                launched, launched_run = hold("--launched")  # takes the slot
                other, other_run = hold()  # no host tag: whose pid is it? queues behind
                assert recover_dead_runs(instance) == []

                for proc in (launched, other):
                    proc.kill()
                    proc.wait(30)
                recovered = recover_dead_runs(instance)
                assert [(r.run_id, r.pid, r.failed) for r in recovered] == [
                    (launched_run, launched.pid, True)
                ]
                assert instance.get_run_by_id(launched_run).status == dg.DagsterRunStatus.FAILURE
                # The untagged run is left to its launcher's monitoring, never guessed at.
                assert instance.get_run_by_id(other_run).status == dg.DagsterRunStatus.STARTED
                assert launched_run not in slot_holders(instance)
        finally:
            release.touch()
            os.environ.pop("ADRAG_DAGSTER_PG_URL", None)
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(30)
