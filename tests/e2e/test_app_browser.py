"""The marketer's app in a real browser: `streamlit run` as a subprocess, headless chromium.

Types a segment, confirms the proposal, rejects the first photo, confirms the second, and
checks the generated ad is on the page (and on disk). Each step's screenshot is saved under
test-artifacts/app/. Waits are bounded; the app process is always stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from adrag_app.cli.stack import free_port
from tests.support.app_home import IndexedHome, forget_mlflow, indexed_home, stop, using_env
from tests.support.data import REPO
from tests.support.stack import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = REPO / "test-artifacts" / "app"
PLACEHOLDER = "An audience segment"
TURN_TIMEOUT_MS = 90_000  # the first search loads the encoder in the app process


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    shared = indexed_home(request, tmp_path_factory)
    with using_env(shared.env):
        yield shared
        forget_mlflow()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def app_url(home: IndexedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app process for the module, stopped (and its group killed) whatever happens."""
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, **home.env, "ADRAG_DAGSTER_URL": "http://127.0.0.1:3999"}
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


def test_marketer_makes_an_ad_in_a_real_browser(home: IndexedHome, app_url: str) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: `make setup` installs it")
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TURN_TIMEOUT_MS)
            page.goto(app_url, timeout=60_000)
            chat = page.get_by_placeholder(PLACEHOLDER)
            chat.wait_for()
            expect(page.get_by_text("Which audience segment")).to_be_visible()
            expect(page.get_by_text("296 photos")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "01-start.png"))

            def say(text: str, expected: str, shot: str) -> None:
                chat.fill(text)
                chat.press("Enter")
                expect(page.get_by_text(expected).last).to_be_visible(timeout=TURN_TIMEOUT_MS)
                # Let the rerun finish (stale elements fade out while a script runs).
                page.wait_for_function(
                    "!document.querySelector('[data-testid=\"stStatusWidget\"] button')",
                    timeout=TURN_TIMEOUT_MS,
                )
                page.screenshot(path=str(ARTIFACTS / shot), full_page=True)

            def settle(expected: str, shot: str) -> None:
                expect(page.get_by_text(expected).last).to_be_visible(timeout=TURN_TIMEOUT_MS)
                # Let the rerun finish (stale elements fade out while a script runs).
                page.wait_for_function(
                    "!document.querySelector('[data-testid=\"stStatusWidget\"] button')",
                    timeout=TURN_TIMEOUT_MS,
                )
                page.screenshot(path=str(ARTIFACTS / shot), full_page=True)

            def click(label: str, expected: str, shot: str) -> None:
                page.get_by_role("button", name=label, exact=True).last.click()
                settle(expected, shot)

            say("young urban professionals", "How about", "02-proposal.png")
            click("Search", "Photo 1 of 3", "03-candidate-1.png")
            click("Next", "Photo 2 of 3", "04-candidate-2.png")
            click("Use this photo", "Your ad is ready", "05-ad.png")
            expect(page.get_by_role("button", name="Use this photo")).to_have_count(0)

            ad = page.locator("[data-testid='stImage']").filter(has_text="Your ad").locator("img")
            expect(ad).to_be_visible()
            assert ad.evaluate("img => img.complete && img.naturalWidth") > 200
            expect(page.get_by_role("button", name="Download the ad")).to_be_visible()
            link = page.get_by_role("link", name="See it in Dagster")
            assert link.get_attribute("href") == "http://127.0.0.1:3999/assets/generated_ads"
            ad.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "06-ad-closeup.png"))
            # The sidebar's lower half: encoder warning and index health.
            page.get_by_text("296 photos").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "08-sidebar-health.png"))
        finally:
            browser.close()

    ads = sorted((home.settings().volume / "ads").rglob("*.png"))
    assert ads, "the ad is not on disk"


def test_the_app_refuses_an_ad_link_outside_the_volume(home: IndexedHome, app_url: str) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: `make setup` installs it")
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{app_url}/?ad=../../../../etc/passwd", timeout=60_000)
            refusal = page.get_by_text("cannot be shown")
            expect(refusal).to_be_visible(timeout=60_000)
            page.get_by_placeholder(PLACEHOLDER).wait_for()
            assert "root:" not in page.inner_text("body")
            # The refusal names the requested path, not the server's folders.
            assert str(home.root) not in refusal.inner_text()
            page.screenshot(path=str(ARTIFACTS / "07-refused-link.png"))
        finally:
            browser.close()
