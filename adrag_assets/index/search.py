"""Text-to-photo search over the live collection.

The live collection (behind the alias) records the encoder that built it, and queries are
encoded with that same encoder, so search never mixes two models' vectors, even while a
new encoder's collection is still being filled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adrag_assets.images.reviews import archived_ids, without_archived
from adrag_assets.images.taken import TakenRange, ids_taken
from adrag_assets.index.diversity import diverse_top_k, threshold_for
from adrag_assets.index.floor import DenseFloor, evidence_words
from adrag_assets.index.milvus import (
    PROP_ENCODER_ID,
    PROP_ENCODER_SPEC,
    Hit,
    MilvusError,
    MilvusIndex,
)
from adrag_assets.settings import Settings, load_settings
from adrag_assets.tables import Tables

if TYPE_CHECKING:
    from adrag_assets.embeddings.encoder import ClipEncoder


CANDIDATES = 50  # hits each side of a hybrid search proposes before fusion


class IndexNotReady(RuntimeError):
    """Nothing is indexed yet."""


@dataclass(frozen=True)
class LiveCollection:
    """The collection behind the alias and the encoder that built it."""

    name: str
    encoder_id: str
    encoder: ClipEncoder
    spec: str  # the encoder spec recorded on the collection (its near-duplicate scale)


class LiveCollections:
    """The live collection and its loaded encoder, per Milvus URI and alias, for every
    search in this process (the CLI, the image-gen service and the app share :data:`LIVE`).

    The alias is read again on every call: two RPCs under a millisecond together on Milvus
    Lite, file or server (``bench/search_latency.py``), so a switch is seen by the very next
    search, with no TTL and no stale answer. What costs is the rest: the collection's
    properties and the encoder they name. Those never change for a collection name (the
    name is derived from the encoder id), so they are read once per collection; after a
    switch the previous collection's entry is dropped.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str, str], LiveCollection] = {}
        self._lock = threading.Lock()  # the app searches from several sessions' threads

    def get(self, index: MilvusIndex, precision: str = "auto") -> LiveCollection:
        name = index.live_collection()
        if name is None:
            raise IndexNotReady(
                f"no photos are indexed yet in Milvus at {index.shown_uri}: run `adrag ingest` "
                f"(or materialize the assets in Dagster) first"
            )
        key = (index.uri, index.alias, name, precision)
        live = self._known.get(key)
        if live is not None:
            return live
        # Imported here: torch loads in the processes that search, not wherever this
        # module is imported (the Dagster code location, `adrag status`).
        from adrag_assets.embeddings.encoder import load_encoder

        with self._lock:
            if (live := self._known.get(key)) is None:
                props = index.properties(name)
                encoder = load_encoder(props[PROP_ENCODER_SPEC], precision)
                live = LiveCollection(
                    name,
                    props.get(PROP_ENCODER_ID) or encoder.encoder_id,
                    encoder,
                    props[PROP_ENCODER_SPEC],
                )
                # Only the live collection per alias: a replaced one's encoder can be freed.
                self._known = {
                    k: v for k, v in self._known.items() if k[:2] != key[:2] or k[2] == name
                }
                self._known[key] = live
        return live

    def clear(self) -> None:
        with self._lock:
            self._known = {}


LIVE = LiveCollections()


def live_encoder(index: MilvusIndex, precision: str = "auto") -> tuple[str, ClipEncoder]:
    """The live collection's name and its encoder (IndexNotReady when nothing is live)."""
    live = LIVE.get(index, precision)
    return live.name, live.encoder


def search(
    index: MilvusIndex,
    query: str,
    k: int = 3,
    filter: str = "",
    precision: str = "auto",
    settings: Settings | None = None,
    taken: TakenRange | None = None,
) -> list[Hit]:
    """Top-``k`` photos for ``query``: hybrid (CLIP + BM25 on labels) unless configured.

    BM25 over the labels keeps a breed or species in the query useful whatever the encoder,
    including the offline one whose vectors mean nothing. Nothing at all when the query has
    no good match (the relevance floor, ``index/floor.py``; ``ADRAG_RELEVANCE_FLOOR=off``).
    ``taken``: only photos whose EXIF date is in that range (:func:`taken_filter`).
    """
    return search_live(index, query, k, filter, precision, settings, taken)[0]


def taken_filter(filter: str, taken: TakenRange | None, settings: Settings) -> str | None:
    """``filter`` narrowed to the photos taken in ``taken`` (read from the ``images`` table);
    None when no photo was taken then, so there is nothing to search."""
    if taken is None:
        return filter
    ids = ids_taken(Tables(settings.tables_uri), taken)
    if not ids:
        return None
    clause = "image_id in [" + ", ".join(f'"{i}"' for i in ids) + "]"
    return f"({filter}) and {clause}" if filter else clause


def search_live(
    index: MilvusIndex,
    query: str,
    k: int = 3,
    filter: str = "",
    precision: str = "auto",
    settings: Settings | None = None,
    taken: TakenRange | None = None,
) -> tuple[list[Hit], LiveCollection]:
    """:func:`search`, and the live collection (with its encoder) that answered."""
    if not query.strip():
        # An empty query would return arbitrary photos, as if they matched something.
        raise ValueError("the query is empty: describe the photo you are looking for")
    s = settings or load_settings()
    live = LIVE.get(index, precision)
    narrowed = taken_filter(filter, taken, s)
    if narrowed is None:
        return [], live
    filter = visible(narrowed, s)
    try:
        hits = _search_if_relevant(index, live, query, k, filter, s)
    except MilvusError:
        # The alias may have moved, and its old collection been dropped, between reading
        # the alias and searching: search the new live collection once.
        again = LIVE.get(index, precision)
        if again.name == live.name:
            raise
        live, hits = again, _search_if_relevant(index, again, query, k, filter, s)
    return hits, live


def visible(filter: str, settings: Settings) -> str:
    """``filter`` narrowed to the photos not archived in the duplicate review (read on every
    search: a photo archived in another process leaves the very next search)."""
    return without_archived(filter, archived_ids(Tables(settings.tables_uri)))


def _search_if_relevant(
    index: MilvusIndex,
    live: LiveCollection,
    query: str,
    k: int,
    filter: str,
    s: Settings,
    vector: list[float] | None = None,
) -> list[Hit]:
    """The top-``k``, or nothing when the query has no good match (the relevance floor).
    ``vector``: the query already encoded (``bench/hybrid_scale.py`` times the rest).

    The floor's BM25 probe fetches the hybrid's text candidates at once: at 100,000 photos
    BM25 is most of a search's cost, so it is asked once (``bench/hybrid_scale.py``)."""
    if not s.relevance_floor:
        return _search_in(index, live, query, k, filter, s, vector)
    text_hits = text_evidence(index, live.name, query, filter)
    if text_hits:
        return _search_in(index, live, query, k, filter, s, vector, text_hits)
    vector = dense_evidence(index, live, query, filter)
    return [] if vector is None else _search_in(index, live, query, k, filter, s, vector, [])


def has_text_evidence(index: MilvusIndex, name: str, query: str, filter: str = "") -> bool:
    """Whether BM25 finds a photo with a positive score for the query's words (stop words
    left out) among the photos ``filter`` lets through: the floor is asked of the photos the
    search may answer with, so "a beagle" among photos of a month with no beagle is no match
    rather than the pugs of that month."""
    return bool(text_evidence(index, name, query, filter, 1))


def text_evidence(
    index: MilvusIndex, name: str, query: str, filter: str = "", limit: int = CANDIDATES
) -> list[Hit]:
    """BM25's top ``limit`` photos with a positive score for the query's words (stop words
    left out) under ``filter``: the text evidence :func:`has_text_evidence` asks for."""
    words = evidence_words(query)
    return (
        [h for h in index.search_text(name, words, limit, filter) if h.score > 0] if words else []
    )


def dense_evidence(
    index: MilvusIndex, live: LiveCollection, query: str, filter: str = ""
) -> list[float] | None:
    """The query's vector when its best cosine reaches the collection's calibrated dense
    floor; None when it does not, or when dense scores are not trusted (random weights, or
    not calibrated by retrieval_eval yet)."""
    if live.encoder.is_random:
        return None
    # Read on each call, not cached with the collection: retrieval_eval re-calibrates it.
    floor = DenseFloor.from_properties(index.properties(live.name))
    if floor is None or floor.floor is None:
        return None
    vector = live.encoder.encode_texts([query])[0].tolist()
    best = index.search_dense(live.name, vector, 1, filter)
    return vector if best and best[0].score >= floor.floor else None


def _search_in(
    index: MilvusIndex,
    live: LiveCollection,
    query: str,
    k: int,
    filter: str,
    s: Settings,
    vector: list[float] | None = None,
    text_hits: list[Hit] | None = None,
) -> list[Hit]:
    # Near duplicates of a better-ranked photo give way (ADRAG_DIVERSITY; index/diversity.py).
    return diverse_top_k(
        index,
        live.name,
        k,
        threshold_for(s, live.spec) if s.diversity else None,
        lambda n: search_collection(
            index,
            live.name,
            live.encoder,
            query,
            n,
            filter,
            s.search_mode,
            s.hybrid_ranker,
            s.hybrid_weights,
            vector=vector,
            text_hits=text_hits,
        ),
    )


def search_collection(
    index: MilvusIndex,
    name: str,
    encoder: ClipEncoder,
    query: str,
    k: int,
    filter: str = "",
    mode: str = "hybrid",
    ranker: str = "weighted",
    weights: tuple[float, float] = (0.5, 0.5),
    candidates: int = CANDIDATES,
    vector: list[float] | None = None,
    text_hits: list[Hit] | None = None,
) -> list[Hit]:
    """Top-``k`` of one named collection (live or not) in one search mode: what search does
    behind the alias, and what the evaluation runs on a collection before it goes live.
    ``vector``: the query already encoded; ``text_hits``: :func:`text_evidence` for it under
    ``filter`` (BM25 is then not asked again when they cover the candidates). BM25 gets the
    query's words without stop words, as the floor does. No relevance floor here (the
    evaluation ranks every query)."""
    words = evidence_words(query)
    if text_hits is not None and CANDIDATES <= len(text_hits) < max(candidates, k):
        text_hits = None  # more candidates wanted than the probe fetched (diversity widening)
    if mode == "text":
        return index.search_hybrid(
            name,
            _zero(encoder.dim),
            words,
            k,
            filter,
            "weighted",
            (0.0, 1.0),
            candidates,
            text_hits,
        )
    if vector is None:
        vector = encoder.encode_texts([query])[0].tolist()
    if mode == "dense":
        return index.search_dense(name, vector, k, filter)
    return index.search_hybrid(
        name, vector, words, k, filter, ranker, weights, candidates, text_hits
    )


def _zero(dim: int) -> list[float]:
    return [0.0] * (dim - 1) + [1.0]
