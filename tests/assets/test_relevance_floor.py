"""The relevance floor on the pet photos (real ingest, Milvus Lite, the offline encoder)."""

from __future__ import annotations

import dagster as dg
import pytest

from adrag_assets.defs.evaluation import retrieval_eval
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.index.floor import (
    PROP_DENSE_FLOOR,
    PROP_FLOOR_PRECISION,
    DenseFloor,
    calibrate,
    evidence_words,
)
from adrag_assets.index.search import has_text_evidence, search
from adrag_assets.settings import load_settings
from tests.support.helpers import index_for, run_pipeline


@pytest.fixture
def index(pets, instance):
    run_pipeline(pets, instance)
    idx = index_for(pets)
    yield idx
    idx.close()


def test_a_breed_finds_it_and_an_absent_subject_finds_nothing(index, monkeypatch):
    beagles = search(index, "beagle", k=3)
    assert [h.labels["breed"] for h in beagles] == ["beagle"] * 3
    # Stop words alone are no evidence, and random weights never vouch for a dense score.
    assert search(index, "a giraffe on a skateboard", k=3) == []
    assert search(index, "a photo of the", k=3) == []
    live = index.live_collection()
    assert has_text_evidence(index, live, "a beagle on a skateboard")
    assert not has_text_evidence(index, live, "a giraffe on a skateboard")
    # Switched off, the same query gets the three nearest photos as before.
    monkeypatch.setenv("ADRAG_RELEVANCE_FLOOR", "off")
    assert len(search(index, "a giraffe on a skateboard", k=3, settings=load_settings())) == 3


def test_evidence_words_leave_out_stop_words():
    assert evidence_words("A Giraffe, on the Skateboard!") == "giraffe skateboard"
    assert evidence_words("a on the of") == ""


def test_calibration_finds_the_score_where_precision_drops():
    # Best first: 0.9 ok, 0.8 ok, 0.7 miss, 0.6 ok, 0.5 miss, 0.4 miss, 0.3 miss.
    points = [(0.3, False), (0.9, True), (0.5, False), (0.8, True), (0.7, False), (0.6, True),
              (0.4, False)]  # fmt: skip
    assert calibrate(points, 0.75, False).floor == 0.6  # 3 of 4 at >= 0.6
    assert calibrate(points, 0.6, False).floor == 0.5  # 3 of 5
    assert calibrate(points, 1.0, False).floor == 0.8
    assert calibrate([(0.9, False), (0.8, True)], 0.9, False).floor is None
    random = calibrate(points, 0.5, True)
    assert random.floor is None and "random" in random.reason
    # Tied scores pass or fail together: the 0.5s hold 1 hit in 3, so 2 of 4 is too few.
    tied = [(0.9, True), (0.5, True), (0.5, False), (0.5, False)]
    assert calibrate(tied, 0.6, False).floor == 0.9


def test_retrieval_eval_stores_the_floor_and_random_weights_are_never_trusted(
    pets, instance, monkeypatch
):
    run_pipeline(pets, instance)
    monkeypatch.setenv("ADRAG_FLOOR_PRECISION", "0.8")
    result = dg.materialize(
        [retrieval_eval], resources=resources_from_settings(pets), instance=instance
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    assert metadata["dense_floor"] == "" and "random weights" in metadata["dense_floor_reason"]
    index = index_for(pets)
    try:
        live = index.live_collection()
        props = index.properties(live)
        assert props[PROP_DENSE_FLOOR] == "" and props[PROP_FLOOR_PRECISION] == "0.8"
        assert DenseFloor.from_properties(props).floor is None
        # Even a floor every cosine passes is ignored while the weights are random.
        index.set_properties(live, **{PROP_DENSE_FLOOR: "-1.0"})
        assert search(index, "a giraffe on a skateboard", k=3) == []
    finally:
        index.close()
