"""End to end with real processes: Milvus Lite server, Dagster webserver + daemon, the CLI.

A photo dropped into raw/ becomes searchable with nobody running anything; deleting it
removes it; switching the encoder re-embeds into a new collection while search keeps
answering; killing `adrag up` with SIGKILL takes all its services with it. Waits poll for a
condition with a deadline, and every process is stopped, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import psutil
import pytest

from tests.support.data import REPO, pets_images
from tests.support.stack import CHROMIUM, CHROMIUM_ARGS, Stack, wait_for

ARTIFACTS = REPO / "test-artifacts"
PIPELINE_ASSETS = ("raw_photos", "images", "rejected_images", "image_embeddings", "image_index")
# Every asset node of the graph shows its status: nothing "Loading..." and four materialized.
LINEAGE_READY = f"""() => {{
    const text = document.body.innerText;
    return {json.dumps(PIPELINE_ASSETS)}.every(name => text.includes(name))
        && !text.includes("Loading")
        && (text.match(/Materialized/g) || []).length >= 4;
}}"""
# What `adrag up` runs, as it shows in the command lines of its process tree.
STACK_SERVICES = (
    "milvus-lite server",
    "dg dev",
    "dagster_webserver",
    "dagster._daemon",
    "streamlit",
)


@pytest.fixture
def stack(tmp_path):
    home = tmp_path / "home"
    (home / "volume" / "raw").mkdir(parents=True)
    env = {
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": "random:adrag-tiny@1",
        "ADRAG_PRECISION": "fp32",
        "ADRAG_SENSOR_INTERVAL": "3",
        "DAGSTER_HOME": str(home / "dagster"),
    }
    for key in ("ADRAG_VOLUME",):
        os.environ.pop(key, None)
    s = Stack(env, home)
    yield s
    s.stop()


def test_upload_delete_and_encoder_switch(stack):
    raw = stack.home / "volume" / "raw"
    photos = sorted(pets_images().glob("*.jpg"))
    for p in photos[:6]:
        shutil.copy(p, raw / p.name)
    stack.start()
    wait_for(lambda: stack.status().get("index_rows") == 6, 240, "the first 6 photos", stack)

    # A photo the index has never seen, dropped into raw/, becomes searchable by itself.
    new = photos[100]
    shutil.copy(new, raw / new.name)
    wait_for(lambda: f"raw/{new.name}" in (stack.search_paths() or []), 240, "upload", stack)
    # Deleting it removes it from the index on the next run.
    (raw / new.name).unlink()
    wait_for(lambda: f"raw/{new.name}" not in (stack.search_paths() or []), 240, "delete", stack)
    before = stack.status()
    assert before["live_encoder_id"] == "random:adrag-tiny@1"

    # Switch the encoder: restart the stack with another model. The automation re-embeds
    # into a new collection; search answers throughout and ends on the new collection.
    stack.stop()
    stack.env["ADRAG_ENCODER"] = "random:adrag-tiny@2"
    stack.start()
    answers = []

    def switched() -> bool:
        paths = stack.search_paths()
        answers.append(paths)
        assert paths is not None and len(paths) == 6, f"search went dark: {answers[-3:]}"
        return stack.status().get("live_encoder_id") == "random:adrag-tiny@2"

    wait_for(switched, 300, "the encoder switch", stack, every=1.0)
    after = stack.status()
    assert after["index_rows"] == 6 and after["embeddings"] == 6
    assert after["live_collection"] != before["live_collection"]
    assert len(answers) >= 1


def test_data_team_sees_the_lineage_in_a_real_browser(stack):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: `make setup` installs it")
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    from playwright.sync_api import expect, sync_playwright

    raw = stack.home / "volume" / "raw"
    for p in sorted(pets_images().glob("*.jpg"))[:3]:
        shutil.copy(p, raw / p.name)
    stack.start()
    wait_for(lambda: stack.status().get("index_rows") == 3, 240, "the index", stack)
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{stack.dagster_port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/locations/adrag/asset-groups/photo_index", timeout=60_000)
            # The graph draws its nodes first and fills in their status later ("Loading...").
            wait_for_page(page, LINEAGE_READY, "the lineage graph with every asset's status")
            text = page.inner_text("body")
            for name in PIPELINE_ASSETS:
                assert name in text, text
            assert text.count("Materialized") >= 4, text
            page.screenshot(path=str(ARTIFACTS / "dagster-asset-graph.png"))

            # The images asset's latest materialization shows thumbnails of the new photos.
            page.goto(f"{base}/assets/images", timeout=60_000)
            page.get_by_text("[Show Markdown]").first.click(timeout=60_000)
            expect(page.locator("img[src^='data:image']")).to_have_count(3, timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "dagster-images-thumbnails.png"))
        finally:
            browser.close()


def wait_for_page(page, condition_js: str, what: str, timeout_ms: int = 60_000) -> None:
    """Wait until ``condition_js`` holds in the page; fail with what the page shows instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition_js, timeout=timeout_ms)
    except PlaywrightTimeout:
        body = page.inner_text("body")
        raise AssertionError(f"the page never showed {what}; it shows:\n{body[:3000]}") from None


def test_killing_adrag_up_takes_every_service_with_it(stack):
    stack.start()  # returns once the Dagster UI answers
    up = psutil.Process(stack.proc.pid)
    tree = [up, *up.children(recursive=True)]
    commands = " ".join(" ".join(p.cmdline()) for p in tree)
    for part in STACK_SERVICES:
        assert part in commands, f"{part} is not in the stack's process tree: {commands}"
    try:
        stack.proc.kill()
        stack.proc.wait(30)
        wait_for(lambda: not alive(tree), 120, "every process of the stack to end", stack, 0.5)
    finally:
        for p in alive(tree):
            p.kill()


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out
