"""Evaluate one encoder's vectors and collection against the photos' own labels.

Two measures, per label column that can serve as classes (:func:`eligible_labels`):

* **zero-shot classification**, CLIP only: each class name is written into open_clip's
  prompt templates, encoded and averaged into a class vector; each stored photo vector
  (streamed from ``image_embeddings`` in batches) is classified by cosine. Labels only
  say what the right answer is: they never reach the vectors, so an encoder with random
  weights stays at chance (1 / number of classes).
* **text-to-photo retrieval** for "a photo of a {value}" in each search mode (dense, text,
  hybrid): P@1, P@3, P@10 and mAP over the top :data:`DEPTH`, a photo being relevant when
  it carries that value. The text and hybrid modes use BM25 over the labels, so they are
  expected to be near perfect on label words; the dense figures are the encoder's own.

Headline figures: zero-shot top-1 on the column with the most classes (the finest labels,
e.g. the 37 breeds, what published Oxford-IIIT Pet figures measure), and retrieval figures
averaged over every (column, value) query.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from adrag_assets.evaluation.metrics import (
    average_precision,
    class_name,
    eligible_labels,
    label_value,
    precision_at,
)
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.search import IndexNotReady, search_collection
from adrag_assets.tables import Tables

if TYPE_CHECKING:
    from adrag_assets.embeddings.encoder import ClipEncoder

MODES = ("dense", "text", "hybrid")
PRECISION_AT = (1, 3, 10)
DEPTH = 100  # places of each ranking that mAP looks at
TOP_K = (1, 5)  # zero-shot accuracies
BATCH = 512  # photo vectors per step of the zero-shot pass
QUERY_TEMPLATE = "a photo of a {}"


@functools.cache
def templates() -> tuple[Callable[[str], str], ...]:
    """open_clip's reduced set of OpenAI's ImageNet prompts: generic (no dataset words), and
    7 prompts rather than 80 keep the class vectors cheap for any number of classes."""
    import open_clip  # here: importing it loads torch, which the code location defers

    return tuple(open_clip.SIMPLE_IMAGENET_TEMPLATES)


@dataclass
class EvalReport:
    encoder_id: str
    collection: str
    photos: int = 0  # rows of this encoder in image_embeddings
    labelled: int = 0  # of which carry at least one evaluated label
    # {column: {"zero_shot_top1": .., "zero_shot_top5": .., "<mode>_p_at_3": .., ...}}
    per_column: dict[str, dict[str, float]] = field(default_factory=dict)
    # {column: {value: {metric: value, "n": photos}}}
    per_label: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    primary_column: str | None = None
    # Per retrieval query, its best dense hit: (cosine, whether it is relevant), from which
    # the relevance floor is calibrated (adrag_assets/index/floor.py).
    dense_top1: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def has_labels(self) -> bool:
        return bool(self.per_label)

    def summary(self) -> dict:
        """The headline figures and everything per label, JSON-ready (``adrag eval --json``)."""
        head = {
            k: self.overall.get(k)
            for k in ("zero_shot_top1", "zero_shot_top5")
            + tuple(f"{m}_p_at_{k}" for m in MODES for k in PRECISION_AT)
            + tuple(f"{m}_map" for m in MODES)
        }
        return {
            "encoder_id": self.encoder_id,
            "collection": self.collection,
            "photos": self.photos,
            "labelled": self.labelled,
            "primary_column": self.primary_column,
            **head,
            "per_column": self.per_column,
            "per_label": self.per_label,
        }

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics (headline and per column), e.g. for MLflow."""
        out = {k: float(v) for k, v in self.overall.items() if v is not None}
        for column, values in self.per_column.items():
            out.update({f"{column}.{k}": float(v) for k, v in values.items()})
        return out


def evaluate(
    tables: Tables,
    index: MilvusIndex,
    encoder: ClipEncoder,
    collection: str,
    ranker: str = "weighted",
    weights: tuple[float, float] = (0.5, 0.5),
    log: logging.Logger | None = None,
) -> EvalReport:
    """Evaluate ``encoder``'s rows of ``image_embeddings`` and its Milvus ``collection``."""
    log = log or logging.getLogger(__name__)
    eid = encoder.encoder_id
    if not index.client.has_collection(collection):
        raise IndexNotReady(
            f"encoder {eid} has no collection {collection} in Milvus at {index.shown_uri}: "
            f"run `adrag ingest` (or materialize image_index) first"
        )
    labels = _labels(tables, eid)
    report = EvalReport(eid, collection, photos=len(labels))
    columns = eligible_labels(labels.values())
    if not columns:
        log.info("no label column with 2+ values of 2+ photos each: nothing to evaluate")
        return report
    truth = {
        column: {
            i: v
            for i, lab in labels.items()
            if (v := label_value(lab.get(column))) is not None and v in set(values)
        }
        for column, values in columns.items()
    }
    report.labelled = len(set().union(*(t.keys() for t in truth.values())))
    zero_shot, zero_shot_all = _zero_shot(tables, encoder, columns, truth)
    retrieval = _retrieval(
        index, encoder, collection, columns, truth, ranker, weights, report.dense_top1
    )
    for column, values in columns.items():
        counts = {v: 0 for v in values}
        for v in truth[column].values():
            counts[v] += 1
        report.per_label[column] = {
            v: {**zero_shot[column][v], **retrieval[column][v], "n": counts[v]} for v in values
        }
        report.per_column[column] = _column_means(zero_shot_all[column], retrieval[column])
    # The finest labels (most classes) give the headline zero-shot figure.
    report.primary_column = max(columns, key=lambda c: (len(columns[c]), c))
    primary = report.per_column[report.primary_column]
    report.overall = {k: primary[k] for k in ("zero_shot_top1", "zero_shot_top5")}
    queries = [m for col in retrieval.values() for m in col.values()]
    for key in queries[0]:
        report.overall[key] = round(float(np.mean([q[key] for q in queries])), 4)
    log.info("evaluation of %s: %s", eid, json.dumps(report.overall))
    return report


def _labels(tables: Tables, encoder_id: str) -> dict[str, dict]:
    sql = f"SELECT image_id, labels FROM image_embeddings WHERE encoder_id = '{encoder_id}'"
    out: dict[str, dict] = {}
    for batch in tables.query("image_embeddings", sql):
        for r in batch.to_pylist():
            parsed = json.loads(r["labels"] or "{}")
            out[r["image_id"]] = parsed if isinstance(parsed, dict) else {}
    return out


def stream_vectors(
    tables: Tables, encoder_id: str, batch: int = BATCH
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, (n, dim) float32 vectors) of one encoder, a batch at a time, never all at once."""
    sql = f"SELECT image_id, embedding FROM image_embeddings WHERE encoder_id = '{encoder_id}'"
    for rb in tables.query("image_embeddings", sql):
        for start in range(0, rb.num_rows, batch):
            part = rb.slice(start, batch)
            ids = part.column("image_id").to_pylist()
            vectors = np.stack(part.column("embedding").to_numpy(zero_copy_only=False))
            yield ids, vectors.astype(np.float32)


def class_vectors(encoder: ClipEncoder, values: Sequence[str]) -> np.ndarray:
    """(dim, classes) unit class vectors: open_clip's templates, averaged per class."""
    import open_clip  # here: importing it loads torch, which the code location defers

    weights = open_clip.build_zero_shot_classifier(
        encoder.model,
        encoder.tokenizer,
        [class_name(v) for v in values],
        templates(),
        num_classes_per_batch=10,
        device=encoder.device,
    )
    return weights.float().cpu().numpy()


def _zero_shot(
    tables: Tables,
    encoder: ClipEncoder,
    columns: dict[str, list[str]],
    truth: dict[str, dict[str, str]],
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, float]]]:
    """({column: {value: accuracies}}, {column: accuracies over all its photos})."""
    classifiers = {c: class_vectors(encoder, values) for c, values in columns.items()}
    index_of = {c: {v: j for j, v in enumerate(values)} for c, values in columns.items()}
    hits = {c: {k: np.zeros(len(v)) for k in TOP_K} for c, v in columns.items()}
    seen = {c: np.zeros(len(v)) for c, v in columns.items()}
    for ids, vectors in stream_vectors(tables, encoder.encoder_id):
        for column, weights in classifiers.items():
            known = truth[column]
            rows = [(r, index_of[column][known[i]]) for r, i in enumerate(ids) if i in known]
            if not rows:
                continue
            r_idx = np.array([r for r, _ in rows])
            target = np.array([t for _, t in rows])
            logits = vectors[r_idx] @ weights
            order = np.argsort(-logits, axis=1, kind="stable")
            np.add.at(seen[column], target, 1)
            for k in TOP_K:
                ok = (order[:, :k] == target[:, None]).any(axis=1)
                np.add.at(hits[column][k], target[ok], 1)
    per_value: dict[str, dict[str, dict[str, float]]] = {}
    overall: dict[str, dict[str, float]] = {}
    for column, values in columns.items():
        n = np.maximum(seen[column], 1)
        per_value[column] = {
            v: {f"zero_shot_top{k}": round(float(hits[column][k][j] / n[j]), 4) for k in TOP_K}
            for j, v in enumerate(values)
        }
        # Overall accuracy is per photo (micro), as published zero-shot figures are.
        total = max(float(seen[column].sum()), 1.0)
        overall[column] = {
            f"zero_shot_top{k}": round(float(hits[column][k].sum() / total), 4) for k in TOP_K
        }
    return per_value, overall


def query_text(value: str) -> str:
    return QUERY_TEMPLATE.format(class_name(value))


def _retrieval(
    index: MilvusIndex,
    encoder: ClipEncoder,
    collection: str,
    columns: dict[str, list[str]],
    truth: dict[str, dict[str, str]],
    ranker: str,
    weights: tuple[float, float],
    dense_top1: list[tuple[float, bool]],
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per (column, value) query; each query's best dense hit appended to
    ``dense_top1``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column, values in columns.items():
        out[column] = {}
        for value in values:
            relevant = {i for i, v in truth[column].items() if v == value}
            metrics: dict[str, float] = {}
            for mode in MODES:
                hits = search_collection(
                    index, collection, encoder, query_text(value), DEPTH, "", mode,
                    ranker, weights, candidates=DEPTH,
                )  # fmt: skip
                ranked = [h.image_id for h in hits]
                if mode == "dense" and hits:
                    dense_top1.append((hits[0].score, ranked[0] in relevant))
                for k in PRECISION_AT:
                    metrics[f"{mode}_p_at_{k}"] = round(precision_at(ranked, relevant, k), 4)
                metrics[f"{mode}_map"] = round(average_precision(ranked, relevant, DEPTH), 4)
            out[column][value] = metrics
    return out


def _column_means(
    zero_shot: dict[str, float], retrieval: dict[str, dict[str, float]]
) -> dict[str, float]:
    means = dict(zero_shot)
    queries = list(retrieval.values())
    for key in queries[0]:
        means[key] = round(float(np.mean([q[key] for q in queries])), 4)
    return means
