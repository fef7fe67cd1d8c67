"""A campaign's creatives in a real browser: placements toggled, the set downloaded as a zip
and read back, one edit by message, the gallery of past creatives.

`streamlit run` on a free port over the session's indexed pet photos, Debian's chromium via
playwright; every wait is for a condition. Screenshots go to test-artifacts/app/.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

from PIL import Image

from adrag_app.creative.placements import load_placements
from tests.support.app_browser import AppPage, chromium, creative_sidecars, wait_idle
from tests.support.app_home import IndexedHome
from tests.support.data import REPO

ARTIFACTS = REPO / "test-artifacts" / "app"
CHOSEN = ("meta_feed", "story", "google_landscape")


def test_a_conversation_to_a_creative_set_its_zip_and_an_edit(
    home: IndexedHome, app_url: str
) -> None:
    volume = Path(home.settings().volume)
    placements = load_placements()
    before = set(creative_sidecars(volume))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        app = AppPage(page, ARTIFACTS)
        expect = app.expect
        app.open(app_url, "Which audience segment")

        # The placements are toggles: the default two, plus Google's landscape.
        sidebar = page.get_by_test_id("stSidebar")
        landscape = sidebar.get_by_role("button", name=placements["google_landscape"].label)
        landscape.click()
        wait_idle(page)

        app.say("families with young children", "How about")
        app.click("Search", "Photo 1 of 3")
        app.click("Use this photo", "Your ad is ready")

        # All sizes side by side, and the buttons for what comes next stay.
        last = page.get_by_test_id("stChatMessage").last
        for name in CHOSEN:
            p = placements[name]
            caption = f"{p.label} · {p.width}×{p.height}"
            expect(last.get_by_test_id("stImage").filter(has_text=caption)).to_be_visible()
        for label in ("Another variant", "More like this"):
            expect(page.get_by_role("button", name=label, exact=True)).to_be_visible()
        app.shot("11-creative-set.png")

        with page.expect_download() as download:
            last.get_by_role("button", name=f"Download the set ({len(CHOSEN)} sizes, zip)").click()
        data = Path(download.value.path()).read_bytes()
        assert download.value.suggested_filename.endswith(".zip")

        app.say("make it warmer and add the headline 'Home at last'", "This is version 2")
        edited = page.get_by_test_id("stChatMessage").last
        expect(edited.get_by_text("Home at last").first).to_be_visible()
        app.shot("12-edited.png")

        page.get_by_role("tab", name="Past creatives").click()
        # Newest first; other tests in this worker may have added sets of their own.
        ours = re.compile(r"^Home at last · families with young children · ")
        newest = page.get_by_text(ours)
        expect(newest.first).to_contain_text("version 2")
        wait_idle(page)
        app.shot("13-gallery.png")

    # The zip: one PNG per placement shown (one variant), and a manifest naming each.
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert sorted(r["placement"] for r in rows) == sorted(CHOSEN)
        for row in rows:
            p = placements[row["placement"]]
            assert row["size"] == f"{p.width}x{p.height}"
            with Image.open(io.BytesIO(zf.read(row["file"]))) as im:
                assert im.size == (p.width, p.height)
            assert row["headline"] and row["call to action"]

    # The creatives on disk: the first set, then its edit whose sidecars name their parents.
    made = {k: v for k, v in creative_sidecars(volume).items() if k not in before}
    first = {m["placement"]: m for m in made.values() if m["version"] == 1}
    second = {m["placement"]: m for m in made.values() if m["version"] == 2}
    assert set(first) == set(second) == set(CHOSEN)
    assert sorted(r["headline"] for r in rows) == sorted(m["headline"] for m in first.values())
    for name, meta in second.items():
        assert meta["parent"] == first[name]["path"] and meta["headline"] == "Home at last"
        assert meta["render"]["look"]["warmth"] > 0
        assert (volume / meta["path"]).is_file() and (volume / meta["parent"]).is_file()
