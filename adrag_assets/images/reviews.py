"""The duplicate review: people keep or archive photos, recorded in ``photo_reviews``.

Each decision is a row (photo, action, who, when); the last one per photo counts. An archived
photo leaves search, "more like this" and so generation (which only ever uses a photo search
returned), while its file stays in the volume and its vector in the index: search filters
archived ids out inside Milvus, so a top-k is still k photos, and ``restore`` (undo) brings the
photo back at once, with nothing to re-embed or re-index.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from adrag_assets.tables import PHOTO_REVIEWS, Tables

ARCHIVE, RESTORE, KEEP = "archive", "restore", "keep"
ACTIONS = (ARCHIVE, RESTORE, KEEP)
TABLE = "photo_reviews"


class UnknownPhoto(ValueError):
    """No photo of the library has that id or path."""


@dataclass(frozen=True)
class Review:
    image_id: str
    action: str
    user: str
    at: datetime


def resolve_photo(tables: Tables, ref: str) -> tuple[str, str]:
    """``(image_id, path)`` of the library photo whose id or volume path is ``ref``;
    :class:`UnknownPhoto` naming it otherwise."""
    ref = ref.strip()
    if ref and tables.exists("images"):
        quoted = ref.replace("'", "''")
        rows = tables.read(
            "images", ["image_id", "path"], f"image_id = '{quoted}' OR path = '{quoted}'"
        ).to_pylist()
        if rows:
            return rows[0]["image_id"], rows[0]["path"]
    raise UnknownPhoto(
        f"no photo in the library has the id or path {ref!r}: `adrag duplicates` and "
        f"`adrag search` print photos' ids and paths"
    )


def record(tables: Tables, image_ids: list[str], action: str, user: str) -> list[Review]:
    """Record ``action`` on each photo, by ``user`` (may be ""), now: one commit."""
    if action not in ACTIONS:
        raise ValueError(f"unknown review action {action!r}: one of {', '.join(ACTIONS)}")
    now = datetime.now(UTC)
    reviews = [Review(i, action, user, now) for i in dict.fromkeys(image_ids)]
    if reviews:
        tables.open(TABLE)  # created with its schema on first use
        rows = pa.Table.from_pylist([r.__dict__ for r in reviews], PHOTO_REVIEWS)
        write_deltalake(
            tables.uri(TABLE), rows, mode="append", storage_options=tables.storage_options
        )
    return reviews


def latest(tables: Tables) -> dict[str, Review]:
    """The last decision per photo."""
    if not tables.exists(TABLE):
        return {}
    rows = tables.read(TABLE, ["image_id", "action", "user", "at"]).to_pylist()
    out: dict[str, Review] = {}
    for r in sorted(rows, key=lambda r: r["at"]):
        out[r["image_id"]] = Review(r["image_id"], r["action"], r["user"] or "", r["at"])
    return out


def archived_ids(tables: Tables) -> list[str]:
    """The photos whose last decision is ``archive``, sorted (see :data:`ARCHIVED`)."""
    return ARCHIVED.get(tables)


class ArchivedIds:
    """The archived ids per table, read again only when the table has a new commit.

    Search asks on every call: reading the table costs ~15 ms, looking for a new commit in
    its log ~0.5 ms (``update_incremental``), so a decision made in any process is seen by
    the very next search without paying the read each time.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[DeltaTable, int, list[str]]] = {}
        self._lock = threading.Lock()  # the app searches from several sessions' threads

    def get(self, tables: Tables) -> list[str]:
        uri = tables.uri(TABLE)
        with self._lock:
            known = self._known.get(uri)
            if known is None and not tables.exists(TABLE):
                return []
            try:
                table = known[0] if known else tables.open(TABLE)
                if known:
                    table.update_incremental()
            except Exception:  # replaced or damaged since: read it afresh
                self._known.pop(uri, None)
                table = tables.open(TABLE)
                known = None
            version = table.version()
            if known and known[1] == version:
                return known[2]
            ids = sorted(i for i, r in latest(tables).items() if r.action == ARCHIVE)
            self._known[uri] = (table, version, ids)
            return ids


ARCHIVED = ArchivedIds()


def without_archived(filter: str, archived: list[str]) -> str:
    """``filter`` (a Milvus expression, may be empty) AND-ed with ``image_id not in [...]``.

    Image ids are sha256 hex digests (ingest makes them), so they need no escaping; anything
    else is refused rather than spliced into an expression.
    """
    if not archived:
        return filter
    bad = [i for i in archived if not (i.isalnum() and i.isascii())]
    if bad:
        raise ValueError(f"photo_reviews holds ids that are not image ids: {bad[:3]}")
    clause = "image_id not in [" + ", ".join(f'"{i}"' for i in archived) + "]"
    return f"({filter}) and {clause}" if filter.strip() else clause
