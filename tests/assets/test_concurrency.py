"""Two ingest runs at once against one Dagster instance: the pool keeps writers apart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from adrag_app.cli.stack import free_port, port_open
from adrag_assets.defs.resources import POOL
from adrag_assets.instance import dagster_instance, ensure_dagster_home
from adrag_assets.settings import load_settings
from tests.support.app_home import stop
from tests.support.data import pets_images
from tests.support.slot_race import race

BIN = Path(sys.executable).parent


def test_concurrent_ingests_never_overlap_their_writer_steps(env, settings):
    for p in sorted(pets_images().glob("*.jpg"))[:40]:
        shutil.copy(p, settings.raw_dir / p.name)
    port = free_port()
    milvus = subprocess.Popen(
        [
            str(BIN / "milvus-lite"),
            "server",
            "--data-dir",
            str(settings.home / "milvus-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            assert time.monotonic() < deadline, "milvus-lite server did not start"
            time.sleep(0.5)
        run_env = {**os.environ, **env, "ADRAG_MILVUS_URI": f"http://127.0.0.1:{port}"}
        ensure_dagster_home(
            load_settings(run_env).dagster_home
        )  # the dagster.yaml with the pool limit
        procs = [
            subprocess.Popen(
                [str(BIN / "adrag"), "ingest"],
                env=run_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
    finally:
        stop(milvus)  # SIGTERM, then SIGKILL if a loaded machine keeps it past 30 s

    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        windows = []
        for run in runs:
            steps: dict[str, dict[str, float]] = {}
            for e in instance.all_logs(run.run_id):
                ev = e.dagster_event
                if ev and ev.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                    steps.setdefault(ev.step_key, {})[ev.event_type_value] = e.timestamp
            windows += [(s["STEP_START"], s["STEP_SUCCESS"]) for s in steps.values()]
    windows.sort()
    assert len(windows) == 6
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start >= end, f"two writer steps overlapped: {windows}"


def test_two_processes_claiming_at_once_never_both_get_the_one_slot(env, settings):
    # Dagster's SQLite storage gave the one slot to both (adrag_assets/event_log_storage.py).
    home = settings.dagster_home
    with dagster_instance(home) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    winners = race(home, rounds=15)
    assert {n: w for n, w in winners.items() if len(w) != 1} == {}
