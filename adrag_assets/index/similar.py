"""Search by photo: the photos nearest to one photo's CLIP vector in the live collection.

"More like this" (an indexed photo, by ``image_id``) uses the vector stored for it, so it is
exactly what ingest computed; a photo file from outside the index is decoded and encoded as
ingest does (:func:`decode_for_model`: EXIF orientation, 16-bit, transparency) with the live
collection's encoder. Label filters apply inside Milvus as in text search, and near
duplicates of better-ranked photos are dropped the same way (:mod:`.diversity`).
"""

from __future__ import annotations

from pathlib import Path

from adrag_assets.images.decode import MAX_PHOTO_BYTES, RejectedImage, decode
from adrag_assets.index.diversity import collection_threshold, diverse_top_k
from adrag_assets.index.milvus import Hit, MilvusIndex
from adrag_assets.index.search import IndexNotReady, live_encoder, visible
from adrag_assets.settings import Settings, load_settings


class PhotoNotIndexed(LookupError):
    """The image id is not in the live collection."""


class BadPhoto(ValueError):
    """A photo file that cannot be searched with; the message names it and says why."""


def search_by_vector(
    index: MilvusIndex,
    name: str,
    vector: list[float],
    k: int,
    filter: str = "",
    settings: Settings | None = None,
    *,
    unlike_query: bool = False,
) -> list[Hit]:
    """Top-``k`` photos of collection ``name`` by cosine to ``vector``; ``filter`` applies
    inside Milvus, and near duplicates of better-ranked hits (and, with ``unlike_query``, of
    the query itself) are dropped unless ``ADRAG_DIVERSITY`` is off."""
    s = settings or load_settings()
    threshold = collection_threshold(index, name, s) if s.diversity else None
    filter = visible(filter, s)
    return diverse_top_k(
        index,
        name,
        k,
        threshold,
        lambda n: index.search_dense(name, vector, n, filter),
        unlike=[vector] if unlike_query else (),
    )


def similar_to_image(
    index: MilvusIndex,
    image_id: str,
    k: int = 3,
    filter: str = "",
    settings: Settings | None = None,
) -> list[Hit]:
    """The ``k`` photos most like the indexed photo ``image_id``, itself excluded. Its stored
    vector is the query: no encoder is loaded."""
    name = index.live_collection()
    if name is None:
        raise IndexNotReady(
            f"no photos are indexed yet in Milvus at {index.shown_uri}: run `adrag ingest` "
            f"(or materialize the assets in Dagster) first"
        )
    if not image_id or '"' in image_id or "\\" in image_id:
        raise PhotoNotIndexed(f"{image_id!r} is not an image id")
    vector = index.vectors(name, [image_id]).get(image_id)
    if vector is None:
        raise PhotoNotIndexed(
            f"photo {image_id} is not in the live index (collection {name}): "
            f"`adrag search` prints the ids of indexed photos"
        )
    itself = f'image_id != "{image_id}"'
    expr = f"({filter}) and {itself}" if filter.strip() else itself
    # Its own re-exports are not "more like this": they are dropped like duplicates in a top-k.
    return search_by_vector(index, name, list(vector), k, expr, settings, unlike_query=True)


def similar_to_file(
    index: MilvusIndex,
    path: str | Path,
    k: int = 3,
    filter: str = "",
    precision: str = "auto",
    settings: Settings | None = None,
) -> list[Hit]:
    """The ``k`` indexed photos most like the photo file at ``path`` (which need not be
    indexed; when it is, it comes first with a cosine of 1)."""
    return similar_to_photo(index, read_photo(path), k, filter, precision, settings)


def similar_to_photo(
    index: MilvusIndex,
    data: bytes,
    k: int = 3,
    filter: str = "",
    precision: str = "auto",
    settings: Settings | None = None,
) -> list[Hit]:
    """As :func:`similar_to_file`, for a photo's bytes checked by :func:`read_photo`."""
    # Imported here: torch loads only where a photo is encoded, not with the CLI.
    from adrag_assets.embeddings.encoder import decode_for_model

    name, encoder = live_encoder(index, precision)
    vector = encoder.encode_images([decode_for_model(data, encoder.image_size)])[0]
    return search_by_vector(index, name, vector.tolist(), k, filter, settings)


def read_photo(path: str | Path) -> bytes:
    """The bytes of a photo file, checked as ingest checks photos; :class:`BadPhoto` naming
    the file and the reason otherwise."""
    p = Path(path)
    try:
        if not p.is_file():
            raise BadPhoto(f"{p}: no such photo file")
        if p.stat().st_size > MAX_PHOTO_BYTES:
            raise BadPhoto(f"{p}: larger than {MAX_PHOTO_BYTES >> 20} MB")
        data = p.read_bytes()
    except OSError as e:
        raise BadPhoto(f"{p}: cannot read it ({e.strerror or e})") from None
    try:
        decode(str(p), data)
    except RejectedImage as e:
        raise BadPhoto(str(e)) from None
    return data
