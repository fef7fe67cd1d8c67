"""Near duplicates in a top-k: the same shot re-exported should take one place, not three.

Two photos are near duplicates when the cosine of their CLIP vectors is at or above a
threshold. Search keeps a photo only when it is not a near duplicate of a better-ranked photo
it already kept, and fetches more candidates so that ``k`` photos still come back.

The threshold depends on the encoder's cosine scale (``ADRAG_NEAR_DUPLICATE_THRESHOLD`` when
set). A trained CLIP spreads photos out: distinct shots score well below 0.95, re-exports of
one shot above it. Random weights (the offline encoder) squeeze every photo together
(measured with ``random:adrag-tiny`` on the 296 pet photos: distinct pairs score 0.66-0.998,
median 0.96), so 0.95 would call most of the library duplicates; for them the default is
0.999, which a same-size re-export reaches (>= 0.9999) and no two distinct pet photos do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from adrag_assets.index.milvus import PROP_ENCODER_SPEC, Hit, MilvusIndex
from adrag_assets.settings import Settings

TRAINED_THRESHOLD = 0.95
RANDOM_WEIGHTS_THRESHOLD = 0.999
# Candidates fetched beyond k, at first: a top-3 with two re-exports in it still fills.
EXTRA = 8
MAX_FETCH = 400  # stop widening there: a library that is all one shot returns fewer than k


def threshold_for(settings: Settings, encoder_spec: str) -> float:
    """The near-duplicate cosine threshold for a collection built by ``encoder_spec``."""
    if settings.near_duplicate_threshold is not None:
        return settings.near_duplicate_threshold
    random = encoder_spec.strip().startswith("random:")
    return RANDOM_WEIGHTS_THRESHOLD if random else TRAINED_THRESHOLD


def collection_threshold(index: MilvusIndex, name: str, settings: Settings) -> float:
    return threshold_for(settings, str(index.properties(name).get(PROP_ENCODER_SPEC, "")))


def drop_near_duplicates(
    hits: Sequence[Hit],
    vectors: Mapping[str, Sequence[float]],
    k: int,
    threshold: float,
    unlike: Sequence[Sequence[float]] = (),
) -> list[Hit]:
    """The first ``k`` hits, in order, skipping any hit whose cosine with a hit already kept
    (or with a vector of ``unlike``) is at or above ``threshold`` (vectors are unit-norm, so
    cosine is a dot product). A hit without a vector (deleted meanwhile) is kept: nothing
    says it is a duplicate."""
    kept: list[Hit] = []
    kept_vectors = [np.asarray(v, dtype=np.float32) for v in unlike]
    for hit in hits:
        if len(kept) == k:
            break
        v = vectors.get(hit.image_id)
        if v is not None:
            v = np.asarray(v, dtype=np.float32)
            if kept_vectors and float(np.max(np.stack(kept_vectors) @ v)) >= threshold:
                continue
            kept_vectors.append(v)
        kept.append(hit)
    return kept


def diverse_top_k(
    index: MilvusIndex,
    name: str,
    k: int,
    threshold: float | None,
    fetch: Callable[[int], list[Hit]],
    unlike: Sequence[Sequence[float]] = (),
) -> list[Hit]:
    """Top-``k`` of ``fetch(n)`` (a ranked search for ``n`` hits) without near duplicates of
    better-ranked hits, nor of ``unlike`` (the photo a "more like this" started from);
    ``threshold`` None: plain ``fetch(k)``. Widens ``n`` until ``k`` are kept or the search
    has no more to give."""
    if threshold is None:
        return fetch(k)
    n = min(MAX_FETCH, k + EXTRA)
    while True:
        hits = fetch(n)
        vectors = index.vectors(name, [h.image_id for h in hits]) if hits else {}
        kept = drop_near_duplicates(hits, vectors, k, threshold, unlike)
        if len(kept) >= k or len(hits) < n or n >= MAX_FETCH:
            return kept
        n = min(MAX_FETCH, n * 4)
