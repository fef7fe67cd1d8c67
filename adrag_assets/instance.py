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
concurrency:
  pools:
    # The assets that write adrag's Delta tables and Milvus collection share the pool
    # "adrag_index": one such step at a time across all runs, so writers never overlap.
    default_limit: 1
run_retries:
  enabled: true
  max_retries: 2
"""


def ensure_dagster_home(home: Path) -> Path:
    """Create DAGSTER_HOME with a dagster.yaml if missing, and export it for Dagster."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
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
