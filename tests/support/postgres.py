"""A real PostgreSQL for tests: Debian's server in a temp data dir on a free localhost port.

As root, initdb/pg_ctl refuse to run, so they run as the ``postgres`` user (``runuser``);
otherwise as ourselves. Skips with a clear message when the binaries are absent.
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

PG_BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def _bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield ``postgresql://adrag:PASSWORD@127.0.0.1:PORT/adrag``; stop and remove it after."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: run `make setup` as root")
    root = os.geteuid() == 0
    as_user: list[str] = []
    if root:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if root else getpass.getuser()
    base = Path(tempfile.mkdtemp(prefix="adrag-pg-"))
    data, pwfile = base / "data", base / "pw"
    password = "pgTestPassword-0123456789"
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
