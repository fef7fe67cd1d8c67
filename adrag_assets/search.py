"""Text-to-photo search over the live collection.

The live collection (behind the alias) records the encoder that built it, and queries are
encoded with that same encoder, so search never mixes two models' vectors, even while a
new encoder's collection is still being filled.
"""

from __future__ import annotations

from adrag_assets.encoder import ClipEncoder, load_encoder
from adrag_assets.milvus_index import PROP_ENCODER_SPEC, Hit, MilvusIndex


class IndexNotReady(RuntimeError):
    """Nothing is indexed yet."""


def live_encoder(index: MilvusIndex, precision: str = "auto") -> tuple[str, ClipEncoder]:
    name = index.live_collection()
    if name is None:
        raise IndexNotReady(
            f"no photos are indexed yet in Milvus at {index.uri}: run `adrag ingest` "
            f"(or materialize the assets in Dagster) first"
        )
    spec = index.properties(name)[PROP_ENCODER_SPEC]
    return name, load_encoder(spec, precision)


def search(
    index: MilvusIndex, query: str, k: int = 3, filter: str = "", precision: str = "auto"
) -> list[Hit]:
    name, encoder = live_encoder(index, precision)
    vector = encoder.encode_texts([query])[0].tolist()
    return index.search_dense(name, vector, k, filter)
