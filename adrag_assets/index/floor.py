"""The relevance floor: when a text search has no good match, it says so (an empty list).

A search by description passes the floor when either side of the hybrid search has evidence:

* **text**: BM25 over the photos' labels and captions finds a photo with a positive score for
  the query's words, stop words ("a", "on", "the") left out: the collection's analyzer keeps
  them, so "a giraffe on a skateboard" would otherwise match every caption with an "a";
* **dense**: the query's best cosine reaches the encoder's dense floor, calibrated by
  ``retrieval_eval`` on the labelled photos (:func:`calibrate`) and stored with the
  encoder's collection. With random weights, dense scores are never trusted.

Both are asked of the photos the search may answer with (label filters, rejected photos and a
date range applied): "a beagle" among the photos of a month with no beagle is no good match,
rather than the month's pugs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files

PROP_DENSE_FLOOR = "adrag.dense_floor"  # a cosine; "" when dense scores are not trusted
PROP_FLOOR_PRECISION = "adrag.floor_precision"  # the top-1 precision it was calibrated for
PROP_FLOOR_REASON = "adrag.dense_floor_reason"  # how it was found, or why there is none
_WORD = re.compile(r"\w+")


@functools.cache
def stop_words() -> frozenset[str]:
    text = files("adrag_assets.index").joinpath("stop_words.txt").read_text("utf-8")
    return frozenset(
        w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#")
    )


def evidence_words(query: str) -> str:
    """The query's words that can be evidence for BM25 (stop words dropped), space-separated;
    "" when none is left."""
    stop = stop_words()
    return " ".join(w for w in _WORD.findall(query.lower()) if w not in stop)


@dataclass(frozen=True)
class DenseFloor:
    """The cosine a query's best dense hit must reach to count as a match; ``None``: dense
    scores are never trusted (random weights, or precision never reaches the target)."""

    floor: float | None
    precision: float
    reason: str

    def properties(self) -> dict[str, str]:
        return {
            PROP_DENSE_FLOOR: "" if self.floor is None else f"{self.floor:.6f}",
            PROP_FLOOR_PRECISION: f"{self.precision:g}",
            PROP_FLOOR_REASON: self.reason,
        }

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> DenseFloor | None:
        """The floor stored on a collection; ``None`` when it was never calibrated."""
        if PROP_FLOOR_PRECISION not in props:
            return None
        raw = props.get(PROP_DENSE_FLOOR) or ""
        return cls(
            float(raw) if raw else None,
            float(props[PROP_FLOOR_PRECISION]),
            str(props.get(PROP_FLOOR_REASON) or ""),
        )


def calibrate(
    top1: Sequence[tuple[float, bool]], precision: float, random_weights: bool
) -> DenseFloor:
    """The dense floor from each evaluation query's best dense hit ``(cosine, relevant)``:
    the lowest cosine ``t`` such that the queries whose best hit scores at least ``t`` still
    have a top-1 precision of at least ``precision``."""
    if random_weights:
        return DenseFloor(None, precision, "random weights: dense scores are never trusted")
    if not top1:
        return DenseFloor(None, precision, "no labelled queries to calibrate on")
    ranked = sorted(top1, key=lambda p: -p[0])
    floor, hits = None, 0
    for n, (score, relevant) in enumerate(ranked, 1):
        hits += relevant
        tied_below = n < len(ranked) and ranked[n][0] == score
        if not tied_below and hits / n >= precision:
            floor = score
    if floor is None:
        return DenseFloor(
            None,
            precision,
            f"top-1 precision never reaches {precision:g} over {len(ranked)} queries",
        )
    kept = [r for s, r in ranked if s >= floor]
    return DenseFloor(
        floor,
        precision,
        f"top-1 precision {sum(kept) / len(kept):.3f} over the {len(kept)} of "
        f"{len(ranked)} queries scoring at least this",
    )
