"""The marketer's app in a real browser: `streamlit run` as a subprocess, headless chromium.

Types a segment, confirms the proposal, rejects the first photo, confirms the second, and
checks the generated ad is on the page (and on disk). Each step's screenshot is saved under
test-artifacts/app/. Waits are bounded; the app process is always stopped.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.support.app_browser import TURN_TIMEOUT_MS, AppPage, chromium, serving_app
from tests.support.app_home import IndexedHome
from tests.support.data import REPO
from tests.support.fake_llm import FakeLlm, text

ARTIFACTS = REPO / "test-artifacts" / "app"


def test_marketer_makes_an_ad_in_a_real_browser(home: IndexedHome, app_url: str) -> None:
    with chromium() as browser:
        app = AppPage(browser.new_page(viewport={"width": 1400, "height": 1000}), ARTIFACTS)
        page, expect = app.page, app.expect
        app.open(app_url, "Which audience segment")
        expect(page.get_by_text("296 photos")).to_be_visible()
        app.shot("01-start.png", full_page=False)

        app.say("young urban professionals", "How about", "02-proposal.png")
        app.click("Search", "Photo 1 of 3", "03-candidate-1.png")
        app.click("Next", "Photo 2 of 3", "04-candidate-2.png")
        app.click("Use this photo", "Your ad is ready", "05-ad.png")
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
        app.shot("06-ad-closeup.png", full_page=False)
        # The sidebar's lower half: encoder warning and index health.
        page.get_by_text("296 photos").scroll_into_view_if_needed()
        app.shot("08-sidebar-health.png", full_page=False)

    ads = sorted((home.settings().volume / "ads").rglob("*.png"))
    assert ads, "the ad is not on disk"


def test_the_app_refuses_an_ad_link_outside_the_volume(home: IndexedHome, app_url: str) -> None:
    with chromium() as browser:
        app = AppPage(browser.new_page(viewport={"width": 1400, "height": 900}), ARTIFACTS)
        page = app.page
        page.goto(f"{app_url}/?ad=../../../../etc/passwd", timeout=60_000)
        refusal = page.get_by_text("cannot be shown")
        app.expect(refusal).to_be_visible(timeout=60_000)
        app.chat.wait_for()
        assert "root:" not in page.inner_text("body")
        # The refusal names the requested path, not the server's folders.
        assert str(home.root) not in refusal.inner_text()
        app.shot("07-refused-link.png", full_page=False)


def test_a_message_sent_during_a_turn_waits_for_it(home: IndexedHome, tmp_path: Path) -> None:
    """The second message arrives while the first turn runs (the planner's model holds its
    answer until the test lets it go): both are kept, shown in order and answered in order;
    the first stays the segment."""
    release = threading.Event()
    proposal = json.dumps(
        {"description": "a beagle in a sunny park", "reason": "energetic", "species": "dog"}
    )
    with chromium() as browser, FakeLlm("sk-test-queue-0123456789abcdef", [text(proposal)]) as llm:
        llm.answers[0].gate = release
        env = {
            "ADRAG_LLM_BASE_URL": llm.base_url,
            "ADRAG_LLM_MODEL": "fake",
            "ADRAG_LLM_API_KEY": llm.api_key,
            "ADRAG_LLM_ROLE": "planner",
            "ADRAG_LLM_TIMEOUT": "600",
        }
        with serving_app(home, tmp_path / "streamlit.log", **env) as url:
            app = AppPage(browser.new_page(viewport={"width": 1400, "height": 1000}), ARTIFACTS)
            page, expect, chat = app.page, app.expect, app.chat
            app.open(url, "Which audience segment")

            chat.fill("young urban professionals")
            chat.press("Enter")
            deadline = time.monotonic() + TURN_TIMEOUT_MS / 1000
            while not llm.requests:  # the first turn is running, held by the model
                assert time.monotonic() < deadline, "the first turn never asked the model"
                time.sleep(0.1)
            chat.fill("show me a samoyed")
            chat.press("Enter")
            messages = page.get_by_test_id("stChatMessage")
            expect(messages.filter(has_text="show me a samoyed")).to_have_count(1)
            expect(page.get_by_text("Queued: answered after")).to_be_visible()
            app.shot("09-queued.png")
            release.set()

            app.settle("Photo 1 of 3", "10-both-answered.png")
            said = [m.inner_text() for m in messages.all()]
            expect(page.get_by_text("Queued: answered after")).to_have_count(0)
    assert len(said) == 5, said
    assert "Which audience segment" in said[0]
    assert "young urban professionals" in said[1]
    assert "a beagle in a sunny park" in said[2] and "young urban professionals" in said[2]
    assert "show me a samoyed" in said[3]
    assert "Searching for" in said[4] and "samoyed" in said[4] and "Photo 1 of 3" in said[4]
    assert len(llm.requests) == 1  # the first turn ran once
