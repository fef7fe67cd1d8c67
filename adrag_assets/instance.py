"""The Dagster instance adrag records runs and ads in: DAGSTER_HOME with adrag's dagster.yaml."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

DAGSTER_YAML = """\
# Written by adrag on first use. Without a storage section Dagster keeps runs, events and
# schedules in SQLite under this folder; with ADRAG_DAGSTER_PG_URL set, in PostgreSQL.
telemetry:
  enabled: false
nux:
  enabled: false  # no newsletter pop-up over the data team's UI
concurrency:
  pools:
    # The assets that write adrag's Delta tables and Milvus collection share the pool
    # "adrag_index": one such step at a time across all runs, so writers never overlap.
    default_limit: 1
# The daemon fails runs that never started and frees the pool slots a finished run still
# holds (a killed run worker never frees its own). Runs whose process died are failed by
# `adrag ingest` and the dead_runs_sensor (adrag_assets/dead_runs.py).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
# Dagster's default launcher, tagging each run with the host its worker runs on (runs whose
# worker died are then recognised with PostgreSQL storage too: adrag_assets/run_launcher.py).
run_launcher:
  module: adrag_assets.run_launcher
  class: HostTaggingRunLauncher
run_retries:
  enabled: true
  max_retries: 2
# The daemon looks for queued runs to launch every second instead of Dagster's five: a photo
# dropped into raw/ is searchable sooner, for one cheap query a second.
run_queue:
  dequeue_interval_seconds: 1
"""

# Without PostgreSQL: Dagster's SQLite event log, with pool slots claimed atomically across
# processes (adrag_assets/event_log_storage.py says why).
SQLITE_EVENT_LOG = """\
event_log_storage:
  module: adrag_assets.event_log_storage
  class: AtomicSlotSqliteEventLogStorage
  config:
    dagster_home:
      env: DAGSTER_HOME
"""

# Runs, event logs and schedules in PostgreSQL (dagster-postgres). The URL is read by
# Dagster from the variable at start-up (its `env:` syntax): the password never lands here.
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: ADRAG_DAGSTER_PG_URL
"""
OURS = "# Written by adrag on first use."  # how a dagster.yaml that adrag may rewrite begins


def ensure_dagster_home(home: Path, postgres: bool | None = None) -> Path:
    """Create DAGSTER_HOME with adrag's dagster.yaml if missing, and export it for Dagster.

    ``postgres``: whether ``ADRAG_DAGSTER_PG_URL`` is set (None: keep whatever the yaml says).
    A yaml adrag wrote (any version) is brought up to date, so the variable decides; a yaml
    edited by hand (not starting with adrag's first line) is left alone.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    current = config.read_text() if config.exists() else None
    if postgres is None and current is not None:
        postgres = POSTGRES_STORAGE in current
    wanted = DAGSTER_YAML + (POSTGRES_STORAGE if postgres else SQLITE_EVENT_LOG)
    if current is None or (current.startswith(OURS) and current != wanted):
        # Written whole then renamed: a process starting meanwhile reads the old or the new.
        tmp = config.with_name(f".dagster.yaml.{os.getpid()}")
        tmp.write_text(wanted)
        tmp.replace(config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def dagster_instance(home: Path, postgres: bool | None = None) -> dg.DagsterInstance:
    """The persistent Dagster instance at ``home`` (``Settings.dagster_home``).

    Opening it the first time creates its SQLite storage; two processes doing that at once
    race in the schema migration, so the first opening holds a lock file.
    """
    import dagster as dg  # here: `adrag up` writes the home without paying for Dagster

    home = ensure_dagster_home(home, postgres)
    with (home / ".adrag-init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
