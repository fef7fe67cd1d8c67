"""End to end with real processes: Milvus Lite server, Dagster webserver + daemon, the CLI.

A photo dropped into raw/ becomes searchable with nobody running anything; deleting it
removes it; near_duplicates and retrieval_eval follow both (campaign_ads is never shown as
materialized before an ad exists); switching the encoder re-embeds into a new collection
while search keeps answering; killing `adrag up` with SIGKILL takes all its services with
it. Waits poll for a condition with a deadline, and every process is stopped, pass or fail.

The upload/delete/switch test runs the stack on a real PostgreSQL (ADRAG_DAGSTER_PG_URL), as
a deployment past one machine would; the browser and kill tests keep the default SQLite one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psutil
import pytest

from adrag_app.cli.stack import postgres_place
from tests.support.data import REPO, pets_images
from tests.support.postgres import PASSWORD, database_text, postgres_server
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


def new_stack(tmp_path: Path, **extra: str) -> Stack:
    home = tmp_path / "home"
    (home / "volume" / "raw").mkdir(parents=True)
    env = {
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": "random:adrag-tiny@1",
        "ADRAG_PRECISION": "fp32",
        "ADRAG_SENSOR_INTERVAL": "3",
        "DAGSTER_HOME": str(home / "dagster"),
        **extra,
    }
    for key in ("ADRAG_VOLUME", "ADRAG_DAGSTER_PG_URL"):
        os.environ.pop(key, None)
    return Stack(env, home)


@pytest.fixture
def stack(tmp_path):
    s = new_stack(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def pg_stack(tmp_path):
    """A stack whose Dagster instance (runs, event logs, ticks) is in a real PostgreSQL."""
    with postgres_server() as url:
        # After uploads, retrieval_eval runs at most once a minute here (hourly by default).
        s = new_stack(tmp_path, ADRAG_DAGSTER_PG_URL=url, ADRAG_EVAL_CRON="* * * * *")
        try:
            yield s
        finally:
            s.stop()


def test_upload_delete_and_encoder_switch(pg_stack, monkeypatch):
    stack = pg_stack
    raw = stack.home / "volume" / "raw"
    photos = sorted(pets_images().glob("*.jpg"))
    stack.add_photos(photos[:6])
    stack.start()
    monkeypatch.setenv("ADRAG_DAGSTER_PG_URL", stack.env["ADRAG_DAGSTER_PG_URL"])
    instance = dg.DagsterInstance.from_config(str(stack.home / "dagster"))
    # What every process of the stack runs with, looked at on each poll: run workers come
    # and go, so a single look after the fact would miss them.
    argvs: set[str] = set()
    watch = watching(stack, argvs)
    wait_for(watch(lambda: stack.status().get("index_rows") == 6), 240, "6 photos", stack)

    # The automation refreshes what follows the index, with nobody clicking.
    def follows(n: int, encoder: str, after: dict | None = None) -> bool:
        dup, ev = (
            materialized(instance, "near_duplicates"),
            materialized(instance, "retrieval_eval"),
        )
        return (
            dup is not None
            and ev is not None
            and dup["photos"] == n
            and ev["encoder_id"] == encoder
            and (after is None or (dup["run_id"] != after["dup"] and ev["run_id"] != after["ev"]))
        )

    wait_for(lambda: follows(6, "random:adrag-tiny@1"), 300, "first refresh", stack, every=1)
    first = {
        "dup": materialized(instance, "near_duplicates")["run_id"],
        "ev": materialized(instance, "retrieval_eval")["run_id"],
    }
    # Never materialized, so never green: its partitions (the planner's segments while
    # campaigns/segments.txt lists none) are all missing.
    stats = partition_stats(stack, "campaign_ads")
    assert stats["numPartitions"] > 0 and stats["numMaterialized"] == 0, stats
    assert instance.get_latest_materialization_event(dg.AssetKey("campaign_ads")) is None

    # A photo the index has never seen, dropped into raw/, becomes searchable by itself.
    new = photos[100]
    shutil.copy(new, raw / new.name)
    found = watch(lambda: f"raw/{new.name}" in (stack.search_paths() or []))
    wait_for(found, 240, "upload", stack)
    # Deleting it removes it from the index on the next run.
    (raw / new.name).unlink()
    gone = watch(lambda: f"raw/{new.name}" not in (stack.search_paths() or []))
    wait_for(gone, 240, "delete", stack)
    # ...and what follows the index follows the upload and the delete (the evaluation at
    # most once per ADRAG_EVAL_CRON tick: every minute here).
    wait_for(lambda: follows(6, "random:adrag-tiny@1", first), 300, "after uploads", stack)
    before = stack.status()
    assert before["live_encoder_id"] == "random:adrag-tiny@1"

    # Another shell: `adrag ingest` with the same environment records its run in the same
    # PostgreSQL instance as the daemon's sensor-launched runs, and the webserver shows both.
    out = stack.adrag("ingest")
    assert out.returncode == 0, out.stderr[-3000:]
    cli_run = re.search(r"run (\S+) succeeded", out.stdout).group(1)
    monkeypatch.setenv("ADRAG_DAGSTER_PG_URL", stack.env["ADRAG_DAGSTER_PG_URL"])
    assert_one_postgres_instance(stack, cli_run, argvs)

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
    wait_for(lambda: follows(6, "random:adrag-tiny@2"), 300, "after a switch", stack, every=1)
    eval_run = instance.get_run_by_id(materialized(instance, "retrieval_eval")["run_id"])
    assert eval_run.tags.get("dagster/sensor_name") == "adrag_automation", eval_run.tags
    instance.dispose()


def materialized(instance: dg.DagsterInstance, key: str) -> dict | None:
    """The latest materialization of ``key``: its run and metadata values."""
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None:
        return None
    mat = event.asset_materialization
    return {"run_id": event.run_id, **{k: v.value for k, v in mat.metadata.items()}}


def partition_stats(stack: Stack, key: str) -> dict:
    """How many of ``key``'s partitions exist and are materialized, as the webserver says."""
    nodes = graphql(
        stack,
        "{ assetNodes { assetKey { path } partitionStats { numMaterialized numPartitions } } }",
    )["assetNodes"]
    return next(n["partitionStats"] for n in nodes if n["assetKey"]["path"] == [key])


def watching(stack: Stack, argvs: set[str]) -> Callable[[Callable[[], bool]], Callable[[], bool]]:
    """Wrap a wait's check so each poll also records the command lines of the stack's tree."""

    def wrap(check: Callable[[], bool]) -> Callable[[], bool]:
        def checked() -> bool:
            for p in stack.processes():
                with contextlib.suppress(psutil.Error):
                    argvs.add(" ".join(p.cmdline()))
            return check()

        return checked

    return wrap


def graphql(stack: Stack, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.dagster_port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        body = json.loads(r.read())
    assert "errors" not in body, body
    return body["data"]


def assert_one_postgres_instance(stack: Stack, cli_run: str, argvs: set[str]) -> None:
    url = stack.env["ADRAG_DAGSTER_PG_URL"]
    assert PASSWORD in url  # what the searches below look for
    dagster_home = stack.home / "dagster"
    yaml = (dagster_home / "dagster.yaml").read_text()
    assert "env: ADRAG_DAGSTER_PG_URL" in yaml and PASSWORD not in yaml

    # Each Dagster process (webserver, daemon, code servers) runs on that DAGSTER_HOME and
    # gets the URL through its environment only.
    services: dict[str, dict[str, str]] = {}
    for p in stack.processes():
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.cmdline())
            argvs.add(cmd)
            if "dagster" in cmd and "dg dev" not in cmd:
                services[cmd] = p.environ()
    assert any("dagster_webserver" in c for c in services), services.keys()
    assert any("dagster._daemon" in c for c in services), services.keys()
    for cmd, env in services.items():
        assert env.get("DAGSTER_HOME") == str(dagster_home), cmd
        assert env.get("ADRAG_DAGSTER_PG_URL") == url, cmd
    # Dagster hands its children the instance on their command lines: the yaml's `env:`
    # reference to the URL goes there, never the URL (so never the password, in `ps`).
    refs = [c for c in argvs if "--instance-ref" in c]
    assert refs and all("ADRAG_DAGSTER_PG_URL" in c for c in refs), refs
    assert not [c for c in argvs if PASSWORD in c]

    # The runs are in PostgreSQL, all of them: the sensor's, and the CLI's from another shell.
    assert not (dagster_home / "history" / "runs.db").exists()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
    by_sensor = [r for r in runs if r.tags.get("dagster/sensor_name") == "raw_photos_sensor"]
    succeeded = [r for r in by_sensor if r.status == dg.DagsterRunStatus.SUCCESS]
    assert len(succeeded) >= 3, [(r.run_id, r.status) for r in by_sensor]  # add, upload, delete
    cli = next(r for r in runs if r.run_id == cli_run)
    assert cli.status == dg.DagsterRunStatus.SUCCESS and cli.tags["adrag/source"] == "cli"

    # The webserver reads the same storage: it lists every one of those runs.
    shown = graphql(
        stack, "{ runsOrError(limit: 1000) { ... on Runs { results { runId status } } } }"
    )["runsOrError"]["results"]
    assert {r.run_id for r in runs} <= {r["runId"] for r in shown}
    # ...and its instance page names PostgreSQL, by the variable, not by the URL.
    info = graphql(stack, "{ instance { info } }")["instance"]["info"]
    assert "PostgresRunStorage" in info and PASSWORD not in info, info

    # Nowhere in the stack's logs nor in the database (runs, event logs, ticks) is the
    # password; the logs do name the database, and the dump does hold the CLI's run.
    logs = "\n".join(p.read_text(errors="replace") for p in stack.log_files())
    assert f"PostgreSQL at {postgres_place(url)}" in logs
    assert PASSWORD not in logs
    dump = database_text(url)
    assert cli_run in dump and "raw_photos_sensor" in dump
    assert PASSWORD not in dump


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
