"""Every automation condition has a running sensor, and the daemon acts on it: near_duplicates
and retrieval_eval follow uploads and a model switch with nobody clicking; campaign_ads is
never shown as materialized before an ad exists.

The daemon test runs the real stack (`adrag up`: Milvus Lite server, `dg dev` with its
webserver and daemon) on a temporary home and watches its Dagster instance.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from adrag_assets.definitions import defs
from adrag_assets.instance import dagster_instance
from tests.support.data import pets_images
from tests.support.stack import Stack, wait_for

PARTITION_STATS = """{ assetNodes { assetKey { path }
    partitionStats { numMaterialized numPartitions numFailed } } }"""


def test_one_running_automation_sensor_covers_every_condition():
    repo = defs().get_repository_def()
    graph = repo.asset_graph
    automated = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert {"near_duplicates", "retrieval_eval", "image_embeddings", "image_index"} <= {
        k.to_user_string() for k in automated
    }
    sensors = [s for s in repo.sensor_defs if isinstance(s, dg.AutomationConditionSensorDefinition)]
    # Dagster adds its default sensor (which starts STOPPED) only for assets no sensor targets.
    assert [s.name for s in sensors] == ["adrag_automation"]
    assert sensors[0].default_status == dg.DefaultSensorStatus.RUNNING
    assert automated <= sensors[0].asset_selection.resolve(graph)


def materialized(instance: dg.DagsterInstance, key: str) -> dict | None:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None:
        return None
    mat = event.asset_materialization
    return {"run_id": event.run_id, **{k: v.value for k, v in mat.metadata.items()}}


def partition_stats(stack: Stack, key: str) -> dict | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.dagster_port}/graphql",
        data=json.dumps({"query": PARTITION_STATS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        nodes = json.loads(answer.read())["data"]["assetNodes"]
    return next(n["partitionStats"] for n in nodes if n["assetKey"]["path"] == [key])


@pytest.fixture
def stack(tmp_path: Path):
    home = tmp_path / "home"
    (home / "volume" / "raw").mkdir(parents=True)
    for key in ("ADRAG_VOLUME", "ADRAG_DAGSTER_PG_URL"):
        os.environ.pop(key, None)
    s = Stack(
        {
            "ADRAG_HOME": str(home),
            "ADRAG_ENCODER": "random:adrag-tiny@1",
            "ADRAG_PRECISION": "fp32",
            "ADRAG_SENSOR_INTERVAL": "3",
            # After uploads, retrieval_eval runs at most once per minute here (hourly by default).
            "ADRAG_EVAL_CRON": "* * * * *",
            "DAGSTER_HOME": str(home / "dagster"),
        },
        home,
    )
    yield s
    s.stop()


def test_daemon_refreshes_what_follows_the_index_after_uploads_and_a_switch(stack: Stack):
    raw = stack.home / "volume" / "raw"
    photos = sorted(pets_images().glob("*.jpg"))
    for p in photos[:5]:
        shutil.copy(p, raw / p.name)
    stack.start()
    instance = dagster_instance(stack.home / "dagster")

    def both_cover(n: int, encoder: str) -> bool:
        dup, ev = (
            materialized(instance, "near_duplicates"),
            materialized(instance, "retrieval_eval"),
        )
        return (
            dup is not None
            and ev is not None
            and dup["photos"] == n
            and ev["photos"] == n
            and ev["encoder_id"] == encoder
        )

    wait_for(lambda: both_cover(5, "random:adrag-tiny@1"), 300, "first refresh", stack, every=1)
    # Never materialized, so never green: its partitions (the planner's segments while
    # campaigns/segments.txt lists none) are all missing.
    stats = partition_stats(stack, "campaign_ads")
    assert stats["numPartitions"] > 0 and stats["numMaterialized"] == 0, stats
    assert instance.get_latest_materialization_event(dg.AssetKey("campaign_ads")) is None

    for p in photos[5:7]:  # uploads: the sensor ingests, the automation does the rest
        shutil.copy(p, raw / p.name)
    wait_for(lambda: both_cover(7, "random:adrag-tiny@1"), 300, "after uploads", stack, every=1)

    stack.stop()  # a model switch: the encoder's code version changes
    stack.env["ADRAG_ENCODER"] = "random:adrag-tiny@2"
    stack.start()
    wait_for(lambda: both_cover(7, "random:adrag-tiny@2"), 300, "after a switch", stack, every=1)
    eval_run = instance.get_run_by_id(materialized(instance, "retrieval_eval")["run_id"])
    assert eval_run.tags.get("dagster/sensor_name") == "adrag_automation", eval_run.tags
