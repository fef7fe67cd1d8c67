"""The Dagster instance adrag records runs and ads in: DAGSTER_HOME with adrag's dagster.yaml."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import dagster as dg

DAGSTER_YAML = """\
# Written by adrag on first use. Dagster's defaults keep runs, events and schedules in
# SQLite under this folder.
telemetry:
  enabled: false
nux:
  enabled: false  # no newsletter pop-up over the data team's UI
concurrency:
  pools:
    # The assets that write adrag's Delta tables and Milvus collection share the pool
    # "adrag_index": one such step at a time across all runs, so writers never overlap.
    default_limit: 1
# Dagster's SQLite event log, with pool slots claimed atomically across processes
# (adrag_assets/event_log_storage.py says why).
event_log_storage:
  module: adrag_assets.event_log_storage
  class: AtomicSlotSqliteEventLogStorage
  config:
    dagster_home:
      env: DAGSTER_HOME
# The daemon fails runs that never started and frees the pool slots a finished run still
# holds (a killed run worker never frees its own). Runs whose process died are failed by
# `adrag ingest` and the dead_runs_sensor (adrag_assets/dead_runs.py).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
run_retries:
  enabled: true
  max_retries: 2
"""

# What earlier adrag versions wrote; such a file is brought up to date, any other is left alone.
_EARLIER_YAMLS = (
    """\
# Written by adrag on first use. Dagster's defaults keep runs, events and schedules in
# SQLite under this folder.
telemetry:
  enabled: false
concurrency:
  pools:
    # The assets that write adrag's Delta tables and Milvus collection share the pool
    # "adrag_index": one such step at a time across all runs, so writers never overlap.
    default_limit: 1
run_retries:
  enabled: true
  max_retries: 2
""",
)


def ensure_dagster_home(home: Path) -> Path:
    """Create DAGSTER_HOME with adrag's dagster.yaml (unless one of the user's is there), and
    export it for Dagster."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() in _EARLIER_YAMLS:
        # Written whole then renamed: a process starting meanwhile reads the old or the new.
        tmp = config.with_name(f".dagster.yaml.{os.getpid()}")
        tmp.write_text(DAGSTER_YAML)
        tmp.replace(config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def dagster_instance(home: Path) -> dg.DagsterInstance:
    """The persistent Dagster instance at ``home`` (``Settings.dagster_home``).

    Opening it the first time creates its SQLite storage; two processes doing that at once
    race in the schema migration, so the first opening holds a lock file.
    """
    home = ensure_dagster_home(home)
    with (home / ".adrag-init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
