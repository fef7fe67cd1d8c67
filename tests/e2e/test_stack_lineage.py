"""A whole `adrag up` (Milvus Lite server, Dagster webserver + daemon, the app) on the default
SQLite instance: the data team sees the pipeline's lineage and the new photos' thumbnails in
a real browser, then SIGKILL on `adrag up` takes every one of its services with it.

One stack for both checks (a stack's start is most of the cost). Waits poll for a condition
with a deadline, and every process is stopped, pass or fail. The upload/delete/switch stack
on PostgreSQL is tests/e2e/test_stack_e2e.py.
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
from tests.support.stack import CHROMIUM, CHROMIUM_ARGS, Stack, new_stack, wait_for

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
    s = new_stack(tmp_path)
    yield s
    s.stop()


def test_the_lineage_in_a_real_browser_then_sigkill_takes_every_service(stack: Stack):
    raw = stack.home / "volume" / "raw"
    for p in sorted(pets_images().glob("*.jpg"))[:3]:
        shutil.copy(p, raw / p.name)
    stack.start()  # returns once the Dagster UI answers
    wait_for(lambda: stack.status().get("index_rows") == 3, 240, "the index", stack)
    if Path(CHROMIUM).exists():
        data_team_sees_the_lineage(stack)
    elif os.environ.get("CI"):
        pytest.fail("Debian's chromium is missing: `make setup` installs it")
    # (without chromium, locally, the kill below is still checked)

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


def data_team_sees_the_lineage(stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

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


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out
