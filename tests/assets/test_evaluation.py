"""Retrieval quality as an asset (`retrieval_eval`) on the pet photos with the offline encoder.

The encoder has random weights: its zero-shot accuracy must sit at chance. The breed and
species labels reach search only through BM25 (text and hybrid modes), never the vectors.
"""

from __future__ import annotations

import dagster as dg
import pytest

from adrag_assets.defs.evaluation import retrieval_eval
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.evaluation.metrics import average_precision, eligible_labels, precision_at
from tests.support.helpers import run_pipeline

BREEDS = 37


def materialize_eval(settings, instance) -> dict:
    result = dg.materialize(
        [retrieval_eval],
        resources=resources_from_settings(settings),
        instance=instance,
        selection=[retrieval_eval],
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


@pytest.fixture
def evaluated(pets, instance) -> dict:
    run_pipeline(pets, instance)
    return materialize_eval(pets, instance)


def test_retrieval_eval_on_the_pets(evaluated):
    summary = evaluated["summary"]
    assert summary["photos"] == 296 and summary["labelled"] == 296
    assert summary["primary_column"] == "breed"
    assert set(summary["per_label"]) == {"breed", "species"}
    assert len(summary["per_label"]["breed"]) == BREEDS
    assert set(summary["per_label"]["species"]) == {"cat", "dog"}
    assert sum(v["n"] for v in summary["per_label"]["breed"].values()) == 296
    breed = summary["per_column"]["breed"]
    # BM25 over the labels finds the breed whatever the vectors: hybrid is near perfect.
    assert breed["hybrid_p_at_3"] >= 0.95
    assert breed["text_p_at_3"] >= 0.95
    # Random weights: zero-shot is chance, 1/37 = 0.027 for breeds. 296 photos give a
    # standard error of about 0.01, so 0.15 only fails when labels leak into the vectors.
    assert summary["zero_shot_top1"] == breed["zero_shot_top1"] < 0.15
    assert breed["zero_shot_top5"] < 0.4  # chance: 5/37 = 0.135
    # Dense with random weights is near the base rate (8/296 per breed), far below hybrid.
    assert breed["dense_p_at_3"] < 0.5
    assert "| breed | 37 |" in evaluated["results"]
    assert evaluated["chart"].startswith("![retrieval quality")
    assert "data:image/png;base64," in evaluated["chart"]


def test_metric_definitions():
    ranked = ["a", "x", "b", "y"]
    assert precision_at(ranked, {"a", "b"}, 1) == 1.0
    assert precision_at(ranked, {"a", "b"}, 3) == pytest.approx(2 / 3)
    assert precision_at(ranked, {"a"}, 10) == 0.1  # missing places are misses
    assert average_precision(ranked, {"a", "b"}, 100) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(["x", "a"], {"a", "b"}, 100) == pytest.approx(0.25)
    rows = [{"breed": "beagle", "species": "dog", "caption": "c1"}] * 2 + [
        {"breed": "pug", "species": "dog", "caption": "c2"},
        {"breed": "pug", "species": "dog"},
        {"breed": "lonely", "species": "dog"},
    ]
    # species has one value, captions are free text, "lonely" has one photo.
    assert eligible_labels(rows) == {"breed": ["beagle", "pug"]}
