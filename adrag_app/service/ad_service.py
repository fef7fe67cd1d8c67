"""The image-gen service's retrieval: the top-K photos for a description, and the brand image.

Deterministic and stateless: the same description (and filters) against the same index gives
the same ranked photos, and ``make_creatives(description, seed_index=i)``
(:mod:`adrag_app.service.creatives`, where ads are made) uses photo ``i`` of exactly that list.
Conversation policy (proposals, rejections, confirmation) belongs to the agent that calls this
as a tool. Paths travel between the parts, never bytes: every path that enters or leaves the
service is relative to the volume and checked by
:meth:`Volume.relative <adrag_assets.volume.Volume.relative>`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from adrag_assets import tracing
from adrag_assets.images.decode import ACCEPTED_FORMATS
from adrag_assets.images.taken import TakenRange
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.search import search_live, taken_filter
from adrag_assets.index.similar import similar_to_image
from adrag_assets.redact import redact_text
from adrag_assets.settings import Settings, load_settings
from adrag_assets.volume import BRAND, open_volume

TOP_K = 3
MAX_DESCRIPTION = 500
# Label keys come from CSV headers and sidecar JSON keys; anything else in a filter is refused
# rather than quoted, since Milvus has no escape syntax for JSON path keys.
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# Milvus's expression grammar knows C-style escapes but not \uXXXX (checked on Milvus Lite):
# escape what its string literals need and refuse other control characters.
_FILTER_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Image ids are sha256 hex digests; anything else in an exclusion list is refused, not quoted.
_IMAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Rejections in one conversation: enough for hours of "not quite", small enough for a filter.
MAX_EXCLUDE = 500


class AdServiceError(RuntimeError):
    """The service cannot do what was asked (no brand image, seed photo gone, ...)."""


@dataclass(frozen=True)
class Candidate:
    """One retrieved photo. ``rank`` is 0-based: ``make_creatives(seed_index=rank)`` uses it."""

    rank: int
    image_id: str
    path: str  # relative to the volume, POSIX separators
    score: float
    labels: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- paths -----------------------------------------------------------------------------------


def _is_image_name(path: str) -> bool:
    name = PurePosixPath(path)
    fmt = Image.registered_extensions().get(name.suffix.lower())
    return fmt in ACCEPTED_FORMATS and not name.name.startswith(".")


def list_brand_images(settings: Settings | None = None) -> list[str]:
    """Brand product images under ``<volume>/brand/`` (any depth), sorted by path."""
    settings = settings or load_settings()
    store = open_volume(settings.volume_uri)
    # walk() reports links out of the volume, FIFOs and the like with a problem: not brands.
    return sorted(f.path for f in store.walk(BRAND) if f.problem is None and _is_image_name(f.path))


def resolve_brand(settings: Settings, brand: str | Path | None) -> str:
    """The brand image to use, relative to the volume: ``brand`` (inside ``<volume>/brand/``,
    relative to the volume or absolute inside it) or the first by name."""
    store = open_volume(settings.volume_uri)
    if brand is None or str(brand).strip() == "":
        found = list_brand_images(settings)
        if not found:
            raise AdServiceError(
                f"no brand image: put the product image(s) under {store.display(BRAND)}/ "
                f"(PNG, JPEG or WebP), or pass one explicitly"
            )
        return found[0]
    rel = store.relative(brand)
    if not rel.startswith(BRAND + "/"):
        raise ValueError(
            f"brand image {str(brand)!r} is not under {BRAND}/ in the volume; give a path "
            f"like '{BRAND}/<file>' relative to the volume {store.uri}"
        )
    if store.stat(rel) is None:
        raise ValueError(f"brand image {str(brand)!r} does not exist in the volume {store.uri}")
    return rel


# -- retrieval -------------------------------------------------------------------------------


def milvus_filter(filters: Mapping[str, str] | None, exclude: Sequence[str] = ()) -> str:
    """A Milvus filter expression on the JSON ``labels`` field: exact matches, AND-ed, and
    ``image_id not in [...]`` for the photos in ``exclude``.

    ``{"species": "dog"}`` -> ``labels["species"] == "dog"``. Keys must look like label names;
    values are quoted and escaped, so no value can change the expression's meaning. Image ids
    must look like image ids.
    """
    clauses = []
    for key, value in sorted((filters or {}).items()):
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise ValueError(f"filter key {key!r} is not a label name (letters, digits, _ . -)")
        if not isinstance(value, str):
            raise ValueError(f"filter value for {key!r} must be a string, got {value!r}")
        if any(ord(c) < 32 and c not in _FILTER_ESCAPES for c in value):
            raise ValueError(f"filter value for {key!r} contains control characters")
        literal = "".join(_FILTER_ESCAPES.get(c, c) for c in value)
        clauses.append(f'labels["{key}"] == "{literal}"')
    ids = check_exclude(exclude)
    if ids:
        # Inside the search, not after it: the top-k is still k photos.
        clauses.append("image_id not in [" + ", ".join(f'"{i}"' for i in ids) + "]")
    return " and ".join(clauses)


def check_exclude(exclude: Sequence[str] | None) -> list[str]:
    """``exclude`` as a sorted list of distinct image ids; ValueError for anything else."""
    if exclude is None:
        return []
    if isinstance(exclude, str):
        raise ValueError("exclude must be a list of image ids, not a string")
    ids = set()
    for image_id in exclude:
        if not isinstance(image_id, str) or not _IMAGE_ID.match(image_id):
            raise ValueError(f"{image_id!r} is not an image id")
        ids.add(image_id)
    if len(ids) > MAX_EXCLUDE:
        raise ValueError(f"at most {MAX_EXCLUDE} photos can be excluded, got {len(ids)}")
    return sorted(ids)


def _check_description(description: str) -> str:
    # One line: the description goes into a prompt, where a newline could smuggle in a
    # "Headline:" line or other instructions.
    text = " ".join(str(description).split())
    if not text:
        raise ValueError("the description is empty; describe the photo you are looking for")
    if len(text) > MAX_DESCRIPTION:
        raise ValueError(f"the description is longer than {MAX_DESCRIPTION} characters")
    return text


@contextmanager
def _opened(settings: Settings, index: MilvusIndex | None) -> Iterator[MilvusIndex]:
    """The caller's index, or one opened (and closed) for this call: a Milvus Lite file is
    locked by the process using it, so a one-off call must let go when done."""
    if index is not None:
        yield index
        return
    opened = MilvusIndex(settings.milvus_uri, settings.milvus_token, settings.index_alias)
    try:
        yield opened
    finally:
        opened.close()


def _search(
    index: MilvusIndex,
    settings: Settings,
    description: str,
    k: int,
    filters: Mapping[str, str] | None,
    exclude: Sequence[str] = (),
    like: str = "",
) -> tuple[list[Candidate], str]:
    """Ranked candidates and the id of the encoder whose collection answered; with ``like``
    (an image id), the photos most like that photo rather than the description's. A date
    range among ``filters`` (``taken_after`` / ``taken_before``) narrows both."""
    taken, labels = TakenRange.from_filters(filters)
    expr = taken_filter(milvus_filter(labels, exclude), taken, settings)
    if expr is None:  # no photo was taken in the range
        hits, encoder_id = [], index.live_encoder_id() or ""
    elif like:
        check_exclude([like])  # an image id, or ValueError
        # The stored vector is the query: no encoder runs, so the encoder id is the live one's.
        encoder_id = index.live_encoder_id() or ""
        hits = similar_to_image(index, like, k, expr, settings)
    else:
        # search_live names the collection that answered: even if the alias moves mid-call,
        # the recorded encoder id is the one that produced these hits.
        hits, live = search_live(
            index, description, k, filter=expr, precision=settings.precision, settings=settings
        )
        encoder_id = live.encoder_id
    # Ties broken by image id: equal scores must not make the order (and seed_index) flaky.
    ordered = sorted(hits, key=lambda h: (-h.score, h.image_id))
    return [
        Candidate(rank, h.image_id, h.path, h.score, dict(h.labels))
        for rank, h in enumerate(ordered)
    ], encoder_id


def _retrieve_traced(
    description: str,
    k: int,
    filters: Mapping[str, str] | None,
    settings: Settings,
    index: MilvusIndex | None,
    exclude: Sequence[str] = (),
    like: str = "",
) -> tuple[list[Candidate], str]:
    with tracing.span(
        "retrieve",
        tracing.RETRIEVER,
        inputs={
            "description": description,
            "k": k,
            "filters": dict(filters or {}),
            "exclude": list(exclude or ()),
            # Only for "more like this": a search by description traces as before.
            **({"like": like} if like else {}),
        },
    ) as span:
        text = _check_description(description)
        if not 1 <= k <= 100:
            raise ValueError(f"k must be between 1 and 100, got {k}")
        with _opened(settings, index) as idx:
            candidates, encoder_id = _search(idx, settings, text, k, filters, exclude, like)
        span.set_attributes({"encoder_id": encoder_id, "hits": len(candidates)})
        span.set_documents(
            [
                (
                    c.path,
                    {
                        "doc_uri": c.path,
                        "image_id": c.image_id,
                        "score": c.score,
                        "rank": c.rank,
                        "labels": c.labels,
                    },
                )
                for c in candidates
            ]
        )
    return candidates, encoder_id


def retrieve(
    description: str,
    k: int = TOP_K,
    filters: dict[str, str] | None = None,
    *,
    settings: Settings | None = None,
    index: MilvusIndex | None = None,
    exclude: Sequence[str] = (),
    like: str = "",
) -> list[Candidate]:
    """The top-``k`` photos for ``description`` from the live index, best first.

    ``filters`` are exact label matches (``{"species": "dog"}``); ``exclude`` image ids that
    must not come back (photos the marketer rejected). ``index`` lets a long-lived caller (the
    app) reuse one Milvus connection; by default one is opened for the call. ``like``: an
    image id; the photos most like it instead ("more like this"; itself never among them).
    """
    settings = settings or load_settings()
    return _retrieve_traced(description, k, filters, settings, index, exclude, like)[0]


# -- shared by the creatives -----------------------------------------------------------------


def _slug(text: str, max_len: int = 40) -> str:
    # Redacted first: a token pasted into a description must not end up in a file name.
    ascii_text = unicodedata.normalize("NFKD", redact_text(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:
        slug = slug[:max_len].rsplit("-", 1)[0]
    return slug or "ad"


def _generation_seed(image_id: str, brand_sha256: str, prompt: str) -> int:
    # Same photo, brand and prompt -> same model seed: a re-run asks the model for the same
    # picture, so "deterministic" holds as far as the provider allows.
    digest = hashlib.sha256(f"{image_id}\n{brand_sha256}\n{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31
