"""`adrag eval` as a user runs it: a real subprocess on the persistent Dagster instance."""

from __future__ import annotations

import json

import dagster as dg
import mlflow

from adrag_assets.instance import dagster_instance
from adrag_assets.settings import load_settings
from tests.support.helpers import adrag


def test_eval_before_ingest_says_what_to_do(settings, env):
    out = adrag("eval", env=env, check=False)
    assert out.returncode == 1
    assert "adrag ingest" in out.stderr and "Traceback" not in out.stderr


def test_cli_eval_json_logged_to_the_registered_version(pets, env):
    adrag("ingest", env=env)
    adrag("register-encoder", env=env)
    out = json.loads(adrag("eval", "--json", env=env).stdout)
    assert out["encoder_id"] == "random:adrag-tiny@0"
    for key in ("zero_shot_top1", "hybrid_p_at_3", "dense_p_at_3", "text_p_at_3"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["hybrid_p_at_3"] >= 0.95 and out["zero_shot_top1"] < 0.15
    beagle = out["per_label"]["breed"]["beagle"]
    assert beagle["n"] == 8 and beagle["hybrid_p_at_3"] == 1.0
    assert set(out["per_label"]["species"]) == {"cat", "dog"}

    # The run is recorded on the persistent instance, where the UI shows it.
    instance = dagster_instance(load_settings().dagster_home)
    event = instance.get_latest_materialization_event(dg.AssetKey("retrieval_eval"))
    assert event is not None
    meta = event.asset_materialization.metadata
    assert meta["encoder_model"].value == "models:/adrag-encoder/1"

    # ... and the metrics are those of the registered encoder's version in MLflow.
    uri = load_settings().tracing.tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version("adrag-encoder", "1")
    [run] = client.search_runs(
        [client.get_run(mv.run_id).info.experiment_id],
        filter_string="tags.`adrag.model_version` = '1'",
    )
    assert run.data.metrics["hybrid_p_at_3"] == out["hybrid_p_at_3"]
    assert run.data.metrics["breed.zero_shot_top1"] == out["zero_shot_top1"]

    plain = adrag("eval", env=env).stdout
    assert "breed (37 classes)" in plain and "hybrid" in plain and "random weights" in plain
