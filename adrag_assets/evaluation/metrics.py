"""Plain metric helpers: which labels can be evaluated, precision at k, average precision.

Kept free of models and Milvus so the definitions are easy to read and to test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

MIN_PHOTOS = 2  # a value needs at least this many photos to be a class / a query
MIN_VALUES = 2  # a column needs at least this many such values to be evaluated
MAX_VALUES = 1000  # more distinct values than this: an id-like column, not a class label


def label_value(value: object) -> str | None:
    """A label value usable as a class name (text or a number), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        text = str(value).strip()
        return text or None
    return None


def eligible_labels(rows: Iterable[Mapping[str, object]]) -> dict[str, list[str]]:
    """{column: sorted values} for every column with at least ``MIN_VALUES`` values that
    each label at least ``MIN_PHOTOS`` photos. ``caption`` is free text, never a class."""
    counts: dict[str, Counter[str]] = {}
    for labels in rows:
        for column, raw in labels.items():
            value = label_value(raw)
            if column != "caption" and value is not None:
                counts.setdefault(column, Counter())[value] += 1
    out: dict[str, list[str]] = {}
    for column, counter in sorted(counts.items()):
        values = sorted(v for v, n in counter.items() if n >= MIN_PHOTOS)
        if MIN_VALUES <= len(values) <= MAX_VALUES:
            out[column] = values
    return out


def class_name(value: str) -> str:
    """How a label value is said in a prompt: ``shiba_inu`` -> ``shiba inu``."""
    return value.replace("_", " ").strip()


def precision_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the first ``k`` places holding a relevant id (missing places count as misses)."""
    return sum(1 for i in ranked[:k] if i in relevant) / k


def average_precision(ranked: Sequence[str], relevant: set[str], depth: int) -> float:
    """AP over the first ``depth`` places, normalised by min(|relevant|, depth): 1.0 when the
    relevant photos fill the top of the list."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, image_id in enumerate(ranked[:depth], 1):
        if image_id in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), depth)
