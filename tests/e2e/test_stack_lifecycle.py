"""`adrag up` as an on-call engineer meets it: SIGTERM stops everything within 10 s, and a
Milvus server that dies is started again while Dagster and the app keep running.

Real processes throughout (a `milvus-lite server`, `dg dev` with its webserver, daemon and
code servers, the Streamlit app); waits poll for a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from adrag_app.cli.stack import STOP_GRACE_S
from tests.support.data import pets_images
from tests.support.stack import Stack, wait_for

# The requirement: every process of the stack gone within 10 s of SIGTERM.
STOP_DEADLINE_S = 10.0


def new_stack(tmp_path: Path) -> Stack:
    home = tmp_path / "home"
    (home / "volume" / "raw").mkdir(parents=True)
    for key in ("ADRAG_VOLUME", "ADRAG_DAGSTER_PG_URL"):
        os.environ.pop(key, None)
    env = {
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": "random:adrag-tiny@1",
        "ADRAG_PRECISION": "fp32",
        "ADRAG_SENSOR_INTERVAL": "3",
        "DAGSTER_HOME": str(home / "dagster"),
    }
    return Stack(env, home)


@pytest.fixture
def stack(tmp_path):
    s = new_stack(tmp_path)
    yield s
    s.stop()


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def service(stack: Stack, part: str) -> psutil.Process | None:
    for p in stack.processes():
        with contextlib.suppress(psutil.NoSuchProcess):
            if part in " ".join(p.cmdline()):
                return p
    return None


def test_sigterm_stops_every_process_within_10s_even_with_a_run_going(stack):
    assert STOP_GRACE_S < STOP_DEADLINE_S  # what is left at the grace is killed
    raw = stack.home / "volume" / "raw"
    stack.start()
    # Photos to ingest, so the stack is busy (the sensor's run, code servers with the model
    # loaded) rather than idle when the signal comes.
    for p in sorted(pets_images().glob("*.jpg"))[:12]:
        shutil.copy(p, raw / p.name)
    # The run's worker: the code server starts it with multiprocessing's spawn.
    wait_for(lambda: service(stack, "spawn_main") is not None, 180, "a run", stack, 0.2)
    tree = stack.processes()
    names = {p.pid: " ".join(p.cmdline())[:80] for p in tree}
    started = time.monotonic()
    stack.proc.send_signal(signal.SIGTERM)
    try:
        deadline = started + STOP_DEADLINE_S
        gone: dict[int, float] = {}
        while (left_now := alive(tree)) and time.monotonic() < deadline:
            for p in tree:
                if p not in left_now:
                    gone.setdefault(p.pid, time.monotonic() - started)
            time.sleep(0.05)
        took = time.monotonic() - started
        left = [" ".join(p.cmdline())[:120] for p in alive(tree)]
        print(f"\nadrag up and its {len(tree) - 1} processes gone {took:.1f}s after SIGTERM")
        print("  last to go:", sorted(gone.values())[-3:], names.get(max(gone, key=gone.get)))
        assert not left, f"still running {STOP_DEADLINE_S:.0f}s after SIGTERM: {left}"
        assert stack.proc.wait(5) == 0
        assert "stopped in " in stack.out.read_text()
        print(" ", stack.out.read_text().splitlines()[-1])
    finally:
        for p in alive(tree):
            p.kill()


def test_a_killed_milvus_server_is_started_again_and_the_stack_goes_on(stack):
    raw = stack.home / "volume" / "raw"
    photos = sorted(pets_images().glob("*.jpg"))
    stack.add_photos(photos[:5])
    stack.start()
    wait_for(lambda: stack.status().get("index_rows") == 5, 240, "5 photos indexed", stack)
    milvus = service(stack, "milvus-lite server")
    others = {part: service(stack, part) for part in ("dg dev", "streamlit")}

    milvus.kill()  # kill -9, as the OOM killer would
    wait_for(
        lambda: (m := service(stack, "milvus-lite server")) is not None and m.pid != milvus.pid,
        60,
        "a new milvus-lite server",
        stack,
    )
    out = stack.out.read_text()
    assert f"milvus-lite server (pid {milvus.pid}) exited with signal 9 (SIGKILL)" in out
    assert "starting it again in" in out
    # Dagster and the app were not touched: the same processes, still running.
    assert stack.proc.poll() is None
    for part, proc in others.items():
        assert proc.is_running() and service(stack, part).pid == proc.pid, part

    # The data folder outlives the server: the index answers with its rows.
    wait_for(lambda: stack.status().get("index_rows") == 5, 60, "the rows after restart", stack)
    # And new uploads are indexed by the sensor as before.
    for p in photos[100:103]:
        shutil.copy(p, raw / p.name)
    want = {f"raw/{p.name}" for p in photos[100:103]}
    wait_for(lambda: want <= set(stack.search_paths() or []), 240, "the new photos", stack)
