"""Hybrid retrieval (CLIP + BM25 over labels) on the pet photos with the offline encoder."""

from __future__ import annotations

import json

import pytest
from pymilvus import AnnSearchRequest, WeightedRanker

from adrag_assets.index.search import live_encoder, search
from adrag_assets.settings import load_settings
from tests.support.helpers import index_for, run_pipeline


@pytest.fixture
def index(pets, instance):
    run_pipeline(pets, instance)
    idx = index_for(pets)
    yield idx
    idx.close()


@pytest.mark.parametrize("breed", ["beagle", "samoyed", "persian", "shiba inu"])
def test_a_breed_name_ranks_that_breed_first(index, breed):
    hits = search(index, f"a {breed} in the garden", k=5)
    assert [h.labels["breed"] for h in hits] == [breed] * 5


def test_same_description_same_top3_and_rrf_agrees(index, monkeypatch):
    first = [h.image_id for h in search(index, "a beagle on a lawn", k=3)]
    assert first == [h.image_id for h in search(index, "a beagle on a lawn", k=3)]
    # The weighted fusion, made in Python so that BM25 runs once per search, ranks and
    # scores as Milvus's own WeightedRanker does.
    name, encoder = live_encoder(index)
    for query, weights in [("beagle lawn", (0.5, 0.5)), ("cat sofa", (0.8, 0.2))]:
        vector = encoder.encode_texts([query])[0].tolist()
        ours = index.search_hybrid(name, vector, query, 10, weights=weights)
        reqs = [
            AnnSearchRequest([vector], "vector", {"metric_type": "COSINE"}, 50),
            AnnSearchRequest([query], "sparse", {"metric_type": "BM25"}, 50),
        ]
        milvus = index.client.hybrid_search(name, reqs, WeightedRanker(*weights), limit=10)[0]
        # Equal scores (common with BM25) come in any order from Milvus: compare by score, id.
        assert sorted((-round(h.score, 5), h.image_id) for h in ours) == sorted(
            (-round(h["distance"], 5), h["image_id"]) for h in milvus
        )
    monkeypatch.setenv("ADRAG_HYBRID_RANKER", "rrf")
    rrf = search(index, "a beagle on a lawn", k=3, settings=load_settings())
    # RRF fuses ranks only: with a meaningless dense ranking (random weights) a dense-only
    # hit can come between the beagles. That is why the default ranker is weighted.
    assert len(rrf) == 3 and "beagle" in {h.labels["breed"] for h in rrf}


def test_label_filters_apply_inside_milvus(index):
    # "beagle" (8 photos) outranks "cat" (96): the top-3 are beagles, and post-filtering them
    # would leave nothing; filtering in Milvus finds cats.
    query = "a beagle and a cat"
    assert {h.labels["breed"] for h in search(index, query, k=3)} == {"beagle"}
    hits = search(index, query, k=3, filter='labels["species"] == "cat"')
    assert len(hits) == 3 and {h.labels["species"] for h in hits} == {"cat"}
    # The relevance floor is asked of the photos the filter lets through: no beagle is a cat.
    assert search(index, "a beagle", k=3, filter='labels["species"] == "cat"') == []


def test_dense_only_mode_still_answers(index, monkeypatch):
    monkeypatch.setenv("ADRAG_SEARCH_MODE", "dense")
    hits = search(index, "a beagle", k=3, settings=load_settings())
    assert len(hits) == 3
    assert all(json.dumps(h.labels) for h in hits)


def test_bad_search_settings_fail_clearly(monkeypatch):
    monkeypatch.setenv("ADRAG_HYBRID_WEIGHTS", "half")
    with pytest.raises(ValueError, match="ADRAG_HYBRID_WEIGHTS"):
        load_settings()
    monkeypatch.setenv("ADRAG_HYBRID_WEIGHTS", "0.5,0.5")
    monkeypatch.setenv("ADRAG_SEARCH_MODE", "fuzzy")
    with pytest.raises(ValueError, match="ADRAG_SEARCH_MODE"):
        load_settings()
