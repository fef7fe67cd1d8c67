"""End to end with real processes: Milvus Lite server, Dagster webserver + daemon, the CLI.

A photo dropped into raw/ becomes searchable with nobody running anything; deleting it
removes it; near_duplicates and retrieval_eval follow both (campaign_ads is never shown as
materialized before an ad exists); switching the encoder re-embeds into a new collection
while search keeps answering. Waits poll for a condition with a deadline, and every process
is stopped, pass or fail.

The stack runs on a real PostgreSQL (ADRAG_DAGSTER_PG_URL), as a deployment past one machine
would; tests/e2e/test_stack_lineage.py (the lineage in a browser, SIGKILL) keeps the default
SQLite one. The two are files of their own so that `make test` runs them side by side.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import urllib.request
from collections.abc import Callable

import dagster as dg
import psutil
import pytest

from adrag_app.cli.stack import postgres_place
from adrag_assets.dead_runs import HOST_TAG
from tests.support.data import pets_images
from tests.support.postgres import PASSWORD, database_text, postgres_server
from tests.support.stack import Stack, new_stack, wait_for


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
    # The daemon's runs carry this host (adrag's run launcher): a worker pid is judged on
    # PostgreSQL only for runs started from this machine (adrag_assets/dead_runs.py).
    launched = [r for r in instance.get_runs() if "dagster/sensor_name" in r.tags]
    assert launched and all(r.tags.get(HOST_TAG) == socket.gethostname() for r in launched)

    # Switch the encoder: restart the stack with another model. The automation re-embeds
    # into a new collection; search answers throughout and ends on the new collection.
    # Stopped between runs, so the runs this test waits for are not ones the stop killed
    # (those are failed by the dead_runs_sensor once the stack is up again).
    in_flight = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    wait_for(lambda: not instance.get_runs(in_flight), 300, "the runs to end", stack, every=1)
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
