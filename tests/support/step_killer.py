"""Killing an `adrag ingest` process with SIGKILL while it executes a given step.

The steps of a small ingest last a fraction of a second, too short to hit reliably by polling
alongside the running process. So the process runs in short slices: it is frozen (SIGSTOP),
its run's event log is read, and it is thawed again. A frozen process whose log shows the
step's STEP_START and no STEP_SUCCESS is inside that step, and is killed right there.

The event log is read with SQLite directly, read-only and with a short busy timeout: a
process frozen while it holds a lock of a Dagster database would stall a DagsterInstance's
reads for its 30 s busy timeout; here such a look just fails and the next slice looks again.
The process runs ``SLICE_S`` between two looks, so it starts up at close to its usual pace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil

SLICE_S = 0.005  # how long the process runs between two looks at its event log


class EventLogReader:
    """Read-only view of the runs and step events of a Dagster SQLite instance."""

    def __init__(self, dagster_home: Path):
        self.history = dagster_home / "history"
        self._runs = self._connect(self.history / "runs.db")
        self._shards: dict[str, sqlite3.Connection] = {}

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05)

    def run_tagged(self, key: str, value: str) -> str | None:
        row = self._runs.execute(
            "SELECT run_id FROM run_tags WHERE key = ? AND value = ?", (key, value)
        ).fetchone()
        return row[0] if row else None

    def step_events(self, run_id: str) -> set[tuple[str, str]]:
        """{(STEP_START or STEP_SUCCESS, step key)} logged by the run so far."""
        if run_id not in self._shards:
            shard = self.history / "runs" / f"{run_id}.db"
            if not shard.exists():
                return set()
            self._shards[run_id] = self._connect(shard)
        rows = self._shards[run_id].execute(
            "SELECT dagster_event_type, step_key FROM event_logs "
            "WHERE dagster_event_type IN ('STEP_START', 'STEP_SUCCESS')"
        )
        return set(rows.fetchall())

    def close(self) -> None:
        for conn in (self._runs, *self._shards.values()):
            conn.close()


def _wait_stopped(pid: int, deadline: float) -> None:
    """Return once the process ``pid`` has stopped or exited (SIGSTOP is delivered async)."""
    while psutil.Process(pid).status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
        assert time.monotonic() < deadline, f"process {pid} did not stop"


def kill_inside_step(
    proc: subprocess.Popen, dagster_home: Path, step: str, timeout: float = 300
) -> str:
    """SIGKILL ``proc``, an `adrag ingest`, while it executes ``step``; return its run id."""
    deadline = time.monotonic() + timeout
    reader = EventLogReader(dagster_home)
    run_id = None
    try:
        while True:
            assert time.monotonic() < deadline, f"ingest never reached {step}"
            os.kill(proc.pid, signal.SIGSTOP)
            _wait_stopped(proc.pid, deadline)
            assert proc.poll() is None, f"ingest exited ({proc.returncode}) before {step}"
            events: set[tuple[str, str]] = set()
            # A process frozen while it holds a lock of a Dagster database blocks these reads
            # for a moment: look again after the next slice.
            with contextlib.suppress(sqlite3.OperationalError):
                run_id = run_id or reader.run_tagged("adrag/pid", str(proc.pid))
                events = reader.step_events(run_id) if run_id else set()
            if ("STEP_START", step) in events:
                assert ("STEP_SUCCESS", step) not in events, f"{step} ran within one slice"
                proc.kill()
                proc.wait(30)
                return run_id
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(SLICE_S)
    finally:
        reader.close()
        if proc.poll() is None:  # the test failed: never leave a frozen process behind
            proc.kill()
            proc.wait(30)
