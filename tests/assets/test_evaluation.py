"""Retrieval quality as an asset (`retrieval_eval`) on the pet photos with the offline encoder.

The encoder has random weights: its zero-shot accuracy must sit at chance. The breed and
species labels reach search only through BM25 (text and hybrid modes), never the vectors.
"""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest

from adrag_assets.defs.evaluation import retrieval_eval
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.evaluation.evaluate import stream_vectors, templates
from adrag_assets.evaluation.metrics import (
    average_precision,
    class_name,
    eligible_labels,
    precision_at,
)
from tests.support.helpers import run_pipeline, tables_for

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


def test_zero_shot_agrees_with_clip_benchmark(pets, instance):
    """The same stored vectors, class names and templates through clip_benchmark's own
    classifier and classification loop give the same top-1 and top-5."""
    import torch
    from clip_benchmark.metrics import zeroshot_classification as cb

    run_pipeline(pets, instance)
    summary = materialize_eval(pets, instance)["summary"]
    encoder = load_encoder(pets.encoder, pets.precision, pets.device)
    labels = {
        r["image_id"]: json.loads(r["labels"])
        for r in tables_for(pets).read("image_embeddings", ["image_id", "labels"]).to_pylist()
    }
    for column in ("breed", "species"):
        classes = sorted(summary["per_label"][column])
        ids, vectors = [], []
        for batch_ids, batch in stream_vectors(tables_for(pets), encoder.encoder_id):
            ids += batch_ids
            vectors.append(batch)
        target = torch.tensor([classes.index(labels[i][column]) for i in ids])
        # clip_benchmark wants "{c}" format strings; open_clip's templates are lambdas.
        formats = [t("{c}") for t in templates()]
        names = [class_name(c) for c in classes]
        classifier = cb.zero_shot_classifier(
            encoder.model, encoder.tokenizer, names, formats, "cpu", amp=False
        )
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(np.concatenate(vectors)), target),
            batch_size=64,
        )
        logits, true = cb.run_classification(StoredVectors(), classifier, loader, "cpu", amp=False)
        # cb.accuracy itself calls float() on a 1-element array, which NumPy 2.4 refuses:
        # the same top-k count, on its logits.
        top1, top5 = (
            float(
                (logits.topk(min(k, len(classes)), dim=1).indices == true[:, None])
                .any(dim=1)
                .float()
                .mean()
            )
            for k in (1, 5)
        )
        ours = summary["per_column"][column]
        assert ours["zero_shot_top1"] == pytest.approx(top1, abs=1e-4), column
        assert ours["zero_shot_top5"] == pytest.approx(top5, abs=1e-4), column


class StoredVectors:
    """A stand-in for the CLIP model in clip_benchmark's loop: the "images" it is given are
    the vectors image_embeddings stored, so it encodes nothing again."""

    def encode_image(self, x):
        return x


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
