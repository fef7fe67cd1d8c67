"""A real PostgreSQL for tests: Debian's server in a temp data dir on a free localhost port.

As root, initdb/pg_ctl refuse to run, so they run as the ``postgres`` user (``runuser``);
otherwise as ourselves. Skips with a clear message when the binaries are absent, except in
CI (``CI`` set), where `make setup` installs them as root and their absence is a failure.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.s3 import free_port

# Distinctive, so a search of logs, argv or the database for it cannot match by accident.
PASSWORD = "pgTestPassword-0123456789"
PG_BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: in CI, `make setup` (as root) installs postgresql")
    pytest.skip(why)


def _bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield ``postgresql+psycopg2://adrag:PASSWORD@127.0.0.1:PORT/postgres`` (the password
    is :data:`PASSWORD`); stop and remove the server after."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        _unavailable("PostgreSQL binaries (initdb, pg_ctl) not found: run `make setup` as root")
    root = os.geteuid() == 0
    as_user: list[str] = []
    if root:
        if not shutil.which("runuser"):
            _unavailable("running as root without runuser: cannot start PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if root else getpass.getuser()
    base = Path(tempfile.mkdtemp(prefix="adrag-pg-"))
    data, pwfile = base / "data", base / "pw"
    password = PASSWORD
    pwfile.write_text(password + "\n")
    if root:
        shutil.chown(base, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()
    run = [*as_user]
    try:
        subprocess.run(
            [*run, initdb, "-D", str(data), "-U", "adrag", "--pwfile", str(pwfile), "-A", "md5"],
            check=True,
            capture_output=True,
        )
        opts = f"-h 127.0.0.1 -p {port} -k {base}"
        subprocess.run(
            [*run, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        url = f"postgresql+psycopg2://adrag:{password}@127.0.0.1:{port}/postgres"
        yield url
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*run, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        deadline = time.monotonic() + 30
        while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling with a deadline for the server to let go of the dir
        shutil.rmtree(base, ignore_errors=True)
        del user


def database_text(url: str) -> str:
    """Every row of every table in the database's public schema, as PostgreSQL prints rows:
    what a search for a leaked secret has to look through (runs, event logs, ticks...)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            parts = []
            for table in sorted(tables):
                rows = conn.execute(sa.text(f'SELECT t::text FROM "{table}" AS t')).scalars()
                parts.append(f"== {table}\n" + "\n".join(rows))
            return "\n".join(parts)
    finally:
        engine.dispose()
