"""The Dagster instance adrag records runs and ads in: DAGSTER_HOME with adrag's dagster.yaml."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import dagster as dg

DAGSTER_YAML = """\
# Written by adrag on first use. Without a storage section Dagster keeps runs, events and
# schedules in SQLite under this folder; with ADRAG_DAGSTER_PG_URL set, in PostgreSQL.
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


# Runs, event logs and schedules in PostgreSQL (dagster-postgres). The URL is read by
# Dagster from the variable at start-up (its `env:` syntax): the password never lands here.
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: ADRAG_DAGSTER_PG_URL
"""


def ensure_dagster_home(home: Path, postgres: bool | None = None) -> Path:
    """Create DAGSTER_HOME with a dagster.yaml if missing, and export it for Dagster.

    ``postgres``: whether ``ADRAG_DAGSTER_PG_URL`` is set (None: keep whatever the yaml says).
    True adds the PostgreSQL storage section, False takes it out, rewriting a yaml adrag
    wrote, so the variable decides; a yaml edited by hand (not starting with adrag's first
    line) is left alone.
    """
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    current = yaml.read_text() if yaml.exists() else None
    if postgres is None and current is not None:
        postgres = POSTGRES_STORAGE in current
    wanted = DAGSTER_YAML + (POSTGRES_STORAGE if postgres else "")
    ours = current is not None and current.startswith(DAGSTER_YAML.splitlines()[0])
    if current is None or (ours and current != wanted):
        yaml.write_text(wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def dagster_instance(home: Path, postgres: bool | None = None) -> dg.DagsterInstance:
    """The persistent Dagster instance at ``home`` (``Settings.dagster_home``).

    Opening it the first time creates its SQLite storage; two processes doing that at once
    race in the schema migration, so the first opening holds a lock file.
    """
    home = ensure_dagster_home(home, postgres)
    with (home / ".adrag-init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
