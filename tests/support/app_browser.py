"""The app in a real browser: a `streamlit run` on a free port, Debian's chromium, and a page
whose conversation steps wait for what they expect. The browser tests' module fixtures (the
session's indexed home, one app per module) are here too; tests/e2e/conftest.py offers them."""

from __future__ import annotations

import json
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
from tests.support.app_home import IndexedHome, forget_mlflow, indexed_home, stop, using_env
from tests.support.data import REPO
from tests.support.stack import CHROMIUM, CHROMIUM_ARGS

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


def creative_sidecars(volume: Path) -> dict[str, dict]:
    """Every creative's sidecar in the volume, by its PNG's path."""
    found = {}
    for path in (volume / "ads").rglob("*.json"):
        meta = json.loads(path.read_text())
        if meta.get("kind") == "creative":
            found[meta["path"]] = meta
    return found


@contextmanager
def chromium() -> Iterator:
    """Debian's chromium, headless, closed whatever happens (the test is skipped without it,
    failed on CI); Playwright's ``expect`` goes back to its default for other modules."""
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            expect.set_options(timeout=5_000)
            browser.close()


class AppPage:
    """A page of the app and the conversation's steps: each waits until the page shows what
    it expects and the script run is over, then (given a name) saves a screenshot."""

    def __init__(self, page, shots: Path):
        self.page = page
        self.shots = shots
        self.expect = patient_expect()
        self.chat = page.get_by_placeholder(PLACEHOLDER)
        page.set_default_timeout(TURN_TIMEOUT_MS)

    def open(self, url: str, expected: str) -> None:
        self.page.goto(url, timeout=60_000)
        self.settle(expected)

    def settle(self, expected: str, shot: str | None = None) -> None:
        self.expect(self.page.get_by_text(expected).last).to_be_visible(timeout=TURN_TIMEOUT_MS)
        wait_idle(self.page)
        if shot:
            self.shot(shot)

    def say(self, text: str, expected: str, shot: str | None = None) -> None:
        self.chat.fill(text)
        self.chat.press("Enter")
        self.settle(expected, shot)

    def click(self, label: str, expected: str, shot: str | None = None) -> None:
        self.page.get_by_role("button", name=label, exact=True).last.click()
        self.settle(expected, shot)

    def shot(self, name: str, full_page: bool = True) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.mouse.move(0, 0)  # no tooltip over the page
        self.page.screenshot(path=str(self.shots / name), full_page=full_page)


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The session's indexed home, its environment set in this process for the module."""
    shared = indexed_home(request, tmp_path_factory)
    with using_env(shared.env):
        try:
            yield shared
        finally:
            forget_mlflow()


@pytest.fixture(scope="module")
def app_url(home: IndexedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app process for the module."""
    with serving_app(home, tmp_path_factory.mktemp("streamlit") / "streamlit.log") as url:
        yield url
