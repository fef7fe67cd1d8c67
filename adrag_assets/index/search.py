"""Text-to-photo search over the live collection.

The live collection (behind the alias) records the encoder that built it, and queries are
encoded with that same encoder, so search never mixes two models' vectors, even while a
new encoder's collection is still being filled.
"""

from __future__ import annotations

from adrag_assets.embeddings.encoder import ClipEncoder, load_encoder
from adrag_assets.index.diversity import collection_threshold, diverse_top_k
from adrag_assets.index.milvus import PROP_ENCODER_SPEC, Hit, MilvusIndex
from adrag_assets.settings import Settings, load_settings


class IndexNotReady(RuntimeError):
    """Nothing is indexed yet."""


def live_encoder(index: MilvusIndex, precision: str = "auto") -> tuple[str, ClipEncoder]:
    name = index.live_collection()
    if name is None:
        raise IndexNotReady(
            f"no photos are indexed yet in Milvus at {index.shown_uri}: run `adrag ingest` "
            f"(or materialize the assets in Dagster) first"
        )
    spec = index.properties(name)[PROP_ENCODER_SPEC]
    return name, load_encoder(spec, precision)


def search(
    index: MilvusIndex,
    query: str,
    k: int = 3,
    filter: str = "",
    precision: str = "auto",
    settings: Settings | None = None,
) -> list[Hit]:
    """Top-``k`` photos for ``query``: hybrid (CLIP + BM25 on labels) unless configured.

    BM25 over the labels keeps a breed or species in the query useful whatever the encoder,
    including the offline one whose vectors mean nothing.
    """
    if not query.strip():
        # An empty query would return arbitrary photos, as if they matched something.
        raise ValueError("the query is empty: describe the photo you are looking for")
    s = settings or load_settings()
    name, encoder = live_encoder(index, precision)
    return diverse_top_k(
        index,
        name,
        k,
        collection_threshold(index, name, s) if s.diversity else None,
        lambda n: search_collection(
            index, name, encoder, query, n, filter, s.search_mode, s.hybrid_ranker, s.hybrid_weights
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
    candidates: int = 50,
) -> list[Hit]:
    """Top-``k`` of one named collection (live or not) in one search mode: what search does
    behind the alias, and what the evaluation runs on a collection before it goes live."""
    if mode == "text":
        return index.search_hybrid(
            name, _zero(encoder.dim), query, k, filter, "weighted", (0.0, 1.0), candidates
        )
    vector = encoder.encode_texts([query])[0].tolist()
    if mode == "dense":
        return index.search_dense(name, vector, k, filter)
    return index.search_hybrid(name, vector, query, k, filter, ranker, weights, candidates)


def _zero(dim: int) -> list[float]:
    return [0.0] * (dim - 1) + [1.0]
