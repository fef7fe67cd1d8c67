"""The app in a real browser: a `streamlit run` on a free port, and waits for its page."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adrag_app.cli.stack import free_port
from tests.support.app_home import IndexedHome, stop
from tests.support.data import REPO
from tests.support.stack import CHROMIUM

PLACEHOLDER = "An audience segment"
TURN_TIMEOUT_MS = 90_000  # the first search loads the encoder in the app process


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def serving_app(
    home: IndexedHome, log: Path, *, port: int | None = None, **env: str
) -> Iterator[str]:
    """A `streamlit run` of the app with ``env`` on ``port`` (default: a free one), stopped
    (and its group killed) whatever happens; its URL."""
    port = port or free_port()
    env = {**os.environ, **home.env, "ADRAG_DAGSTER_URL": "http://127.0.0.1:3999", **env}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "streamlit"),
            "run",
            str(REPO / "adrag_app" / "ui" / "app.py"),
            "--server.headless=true",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--server.fileWatcherType=none",
            "--browser.gatherUsageStats=false",
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the app did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    except BaseException:
        print(f"--- streamlit log ---\n{log.read_text()[-4000:]}")
        raise
    finally:
        stop(proc)


def patient_expect():
    """Playwright's ``expect`` waiting as long as a turn may take: on a loaded machine the
    sidebar's first health check alone can outlast its 5 s default."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TURN_TIMEOUT_MS)
    return expect


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: `make setup` installs it")
        pytest.skip("Debian's chromium is not installed (make setup installs it)")


def wait_idle(page) -> None:
    """Until the page's script run is over (stale elements fade out while one runs)."""
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"] button')",
        timeout=TURN_TIMEOUT_MS,
    )
