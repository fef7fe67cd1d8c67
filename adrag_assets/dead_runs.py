"""Runs whose process died: mark them failed and free the pool slots they still hold.

A run killed with SIGKILL (or by the OOM killer) never reports its end: it stays STARTED in
the instance and keeps its slot of the pool ``adrag_index`` (limit 1), so every later writer
waits forever. :func:`recover_dead_runs` finds such runs and releases them; ``adrag ingest``
calls it before its run, the ``dead_runs_sensor`` on every tick in the daemon.

Which process ran a run:

* ``adrag ingest`` runs in-process and tags its run with its pid and host (:func:`process_tags`);
  a run tagged on another host is never judged from here.
* A run launched by the daemon runs in a worker process that Dagster records as the pid of the
  run's RUN_START event. That pid is trusted where the run's worker is known to be a process of
  this machine: a run tagged with this host by adrag's launcher (``adrag_assets/run_launcher.py``;
  SQLite or PostgreSQL storage), or any run on SQLite storage with Dagster's default launcher
  (runs from before the tag). Elsewhere the launcher's own monitoring applies.

A process is gone when no process has its pid, or it is a zombie, or the process with that pid
started after the run did (the pid was reused). A run whose process is alive is never touched.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import dagster as dg
import psutil
from dagster._core.events import DagsterEventType, JobFailureData, RunFailureReason
from dagster._core.storage.event_log import SqliteEventLogStorage

PID_TAG = "adrag/pid"
HOST_TAG = "adrag/host"
# Runs that claim to be running: NOT_STARTED too, since an in-process run killed before its
# RUN_START event stays there.
IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Process start times come from the kernel's boot time in whole seconds; allow for that.
CLOCK_SLACK_S = 2.0


@dataclass(frozen=True)
class Recovered:
    run_id: str
    pid: int
    failed: bool  # marked failed now (False: it had already ended but still held a slot)

    @property
    def line(self) -> str:
        if self.failed:
            return (
                f"recovered run {self.run_id}: its process {self.pid} is gone; "
                "marked failed and freed its slot"
            )
        return f"recovered run {self.run_id}: its process {self.pid} is gone; freed its slot"


def process_tags() -> dict[str, str]:
    """Tags naming this process, for a run executed in it (``dg.materialize(tags=...)``)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def recover_dead_runs(instance: dg.DagsterInstance) -> list[Recovered]:
    """Fail the in-progress runs whose process is gone, and free the pool slots held by runs
    whose process is gone. Returns what it did, one entry per run."""
    recovered: list[Recovered] = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        pid = _dead_process(instance, record)
        if pid is None:
            continue
        run = instance.get_run_by_id(record.dagster_run.run_id)
        if run is None or run.is_finished:  # it ended on its own meanwhile
            continue
        message = (
            f"The process of this run ({pid}) is gone: killed or crashed without reporting "
            "its end. Marked failed by adrag, which freed its pool slots."
        )
        instance.report_run_failed(
            run,
            message,
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        _free_slots(instance, run.run_id)
        recovered.append(Recovered(run.run_id, pid, failed=True))

    # Runs already marked finished (by a code server that saw its worker die, or by hand in the
    # UI) whose dead process still holds a slot or a place in the pool's queue.
    if instance.event_log_storage.supports_global_concurrency_limits:
        holding = instance.event_log_storage.get_concurrency_run_ids() - {
            r.run_id for r in recovered
        }
        if holding:
            for record in instance.get_run_records(dg.RunsFilter(run_ids=list(holding))):
                if not record.dagster_run.is_finished:
                    continue
                pid = _dead_process(instance, record)
                if pid is not None:
                    _free_slots(instance, record.dagster_run.run_id)
                    recovered.append(Recovered(record.dagster_run.run_id, pid, failed=False))
    return recovered


def _free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def _dead_process(instance: dg.DagsterInstance, record: dg.RunRecord) -> int | None:
    """The pid of the record's run if that process is known and gone, else None."""
    tags = record.dagster_run.tags
    if PID_TAG in tags:
        if tags.get(HOST_TAG) != socket.gethostname() or not tags[PID_TAG].isdigit():
            return None
        pid, since = int(tags[PID_TAG]), record.create_timestamp.timestamp()
    else:
        host = tags.get(HOST_TAG)  # set by adrag's run launcher on the host it launched from
        local = host == socket.gethostname() if host is not None else _local_run_workers(instance)
        if not local or record.start_time is None:
            return None
        starts = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=DagsterEventType.RUN_START, limit=1
        ).records
        event = starts[0].event_log_entry.dagster_event if starts else None
        if event is None or event.pid is None:
            return None
        pid, since = event.pid, record.start_time
    return None if _alive(pid, since) else pid


def _local_run_workers(instance: dg.DagsterInstance) -> bool:
    return isinstance(instance.event_log_storage, SqliteEventLogStorage) and isinstance(
        instance.run_launcher, dg.DefaultRunLauncher
    )


def _alive(pid: int, since: float) -> bool:
    """Whether the process ``pid`` that existed at time ``since`` still runs."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= since + CLOCK_SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process by that pid: it runs, leave it be
        return True
