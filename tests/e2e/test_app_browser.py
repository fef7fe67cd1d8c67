"""The marketer's app in a real browser: `streamlit run` as a subprocess, headless chromium.

Types a segment, confirms the proposal, rejects the first photo, confirms the second, and
checks the generated ad is on the page (and on disk). Each step's screenshot is saved under
test-artifacts/app/. Waits are bounded; the app process is always stopped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.app_browser import (
    PLACEHOLDER,
    TURN_TIMEOUT_MS,
    need_chromium,
    patient_expect,
    serving_app,
    wait_idle,
)
from tests.support.app_home import IndexedHome, forget_mlflow, indexed_home, using_env
from tests.support.data import REPO
from tests.support.fake_llm import FakeLlm, text
from tests.support.stack import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = REPO / "test-artifacts" / "app"


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    shared = indexed_home(request, tmp_path_factory)
    with using_env(shared.env):
        yield shared
        forget_mlflow()


@pytest.fixture(scope="module")
def app_url(home: IndexedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app process for the module."""
    with serving_app(home, tmp_path_factory.mktemp("streamlit") / "streamlit.log") as url:
        yield url


def test_marketer_makes_an_ad_in_a_real_browser(home: IndexedHome, app_url: str) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: `make setup` installs it")
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    from playwright.sync_api import sync_playwright

    expect = patient_expect()

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

            # The default set: the Meta feed and a story, side by side.
            images = page.get_by_test_id("stChatMessage").last.get_by_test_id("stImage")
            ad = images.filter(has_text="1080×1350").locator("img")
            expect(ad).to_be_visible()
            expect(images.filter(has_text="1080×1920").locator("img")).to_be_visible()
            assert ad.evaluate("img => img.complete && img.naturalWidth") > 200
            last = page.get_by_test_id("stChatMessage").last
            zip_button = last.get_by_role("button", name="Download the set (2 sizes, zip)")
            expect(zip_button).to_be_visible()
            expect(page.get_by_role("button", name="Another variant")).to_be_visible()
            link = page.get_by_role("link", name="See it in Dagster")
            assert link.get_attribute("href") == "http://127.0.0.1:3999/assets/ad_creatives"
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
    from playwright.sync_api import sync_playwright

    expect = patient_expect()

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


def test_a_message_sent_during_a_turn_waits_for_it(home: IndexedHome, tmp_path: Path) -> None:
    """The second message arrives while the first turn runs (the planner's model holds its
    answer until the test lets it go): both are kept, shown in order and answered in order;
    the first stays the segment."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    expect = patient_expect()

    release = threading.Event()
    proposal = json.dumps(
        {"description": "a beagle in a sunny park", "reason": "energetic", "species": "dog"}
    )
    with FakeLlm("sk-test-queue-0123456789abcdef", [text(proposal)]) as llm:
        llm.answers[0].gate = release
        env = {
            "ADRAG_LLM_BASE_URL": llm.base_url,
            "ADRAG_LLM_MODEL": "fake",
            "ADRAG_LLM_API_KEY": llm.api_key,
            "ADRAG_LLM_ROLE": "planner",
            "ADRAG_LLM_TIMEOUT": "600",
        }
        with (
            serving_app(home, tmp_path / "streamlit.log", **env) as url,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(TURN_TIMEOUT_MS)
                page.goto(url, timeout=60_000)
                chat = page.get_by_placeholder(PLACEHOLDER)
                chat.wait_for()
                expect(page.get_by_text("Which audience segment")).to_be_visible(timeout=60_000)
                wait_idle(page)

                chat.fill("young urban professionals")
                chat.press("Enter")
                deadline = time.monotonic() + TURN_TIMEOUT_MS / 1000
                while not llm.requests:  # the first turn is running, held by the model
                    assert time.monotonic() < deadline, "the first turn never asked the model"
                    time.sleep(0.1)
                chat.fill("show me a samoyed")
                chat.press("Enter")
                messages = page.get_by_test_id("stChatMessage")
                expect(messages.filter(has_text="show me a samoyed")).to_have_count(
                    1, timeout=TURN_TIMEOUT_MS
                )
                expect(page.get_by_text("Queued: answered after")).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "09-queued.png"), full_page=True)
                release.set()

                expect(page.get_by_text("Photo 1 of 3").last).to_be_visible(timeout=TURN_TIMEOUT_MS)
                wait_idle(page)
                page.screenshot(path=str(ARTIFACTS / "10-both-answered.png"), full_page=True)
                said = [m.inner_text() for m in messages.all()]
                expect(page.get_by_text("Queued: answered after")).to_have_count(0)
            finally:
                browser.close()
    assert len(said) == 5, said
    assert "Which audience segment" in said[0]
    assert "young urban professionals" in said[1]
    assert "a beagle in a sunny park" in said[2] and "young urban professionals" in said[2]
    assert "show me a samoyed" in said[3]
    assert "Searching for" in said[4] and "samoyed" in said[4] and "Photo 1 of 3" in said[4]
    assert len(llm.requests) == 1  # the first turn ran once
