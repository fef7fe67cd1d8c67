"""Sync the Milvus collection of one encoder with ``image_embeddings``.

The collection remembers the Delta version it was last synced to. A sync reads Delta's
change data feed from the next version on and applies, per image, the last change: an
upsert or a delete keyed by ``image_id``. With no recorded version (a new collection), a
table that was rewritten, or a change feed that is gone (vacuumed), it rebuilds from the
table instead: the table is the truth and the index is derived.

The index heals itself. Milvus data that cannot be read is put out of the way first (see
:mod:`adrag_assets.index.health`) and rebuilt. After a sync from the feed (or none), a quick
check compares row counts and looks up the ids the run touched; after a rebuild, or when the
quick check fails, every id is compared (:mod:`adrag_assets.index.compare`): ids missing from
the index are upserted from the table and ghosts (ids the table does not have) deleted, then
the comparison runs again. The last check is what the asset check reports. Drift that keeps
the row count (one row lost, one stray) is the audit job's to find (:func:`audit_index`).

Each row's BM25 text is its labels plus the words OCR read in the photo (``photo_text``). The
collection also remembers the ``photo_text`` version it holds the words of: a sync re-upserts
the photos whose words changed since (that table's change feed; all photos with words when
there is no record or the feed is gone), so new words reach search without a new vector.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from adrag_assets.images.ocr import words_for
from adrag_assets.index.compare import IdComparison, compare_ids, quick_check
from adrag_assets.index.health import make_readable
from adrag_assets.index.milvus import (
    PROP_SYNCED_AT,
    PROP_SYNCED_VERSION,
    PROP_TEXT_VERSION,
    MilvusIndex,
    collection_name,
)
from adrag_assets.tables import Tables

BATCH = 500
REPAIR_SCAN = 2000  # missing ids read back from the table per scan


@dataclass
class IndexStats:
    collection: str = ""
    mode: str = ""  # "rebuild", "incremental", "noop" or "repair"
    upserted: int = 0
    deleted: int = 0
    rows: int = 0
    synced_version: int = 0
    healed: list[str] = field(default_factory=list)  # what was done about unreadable data
    repaired_missing: int = 0
    repaired_ghosts: int = 0
    # The index against the table, after any repair.
    comparison: IdComparison = field(default_factory=lambda: IdComparison(0, 0, "", ""))

    @property
    def repaired(self) -> str:
        return f"{self.repaired_missing} missing, {self.repaired_ghosts} ghosts"


def _row(r: dict) -> dict:
    return {
        "image_id": r["image_id"],
        "path": r["path"],
        "labels": json.loads(r["labels"] or "{}"),
        "vector": list(r["embedding"]),
    }


def _with_words(tables: Tables, rows: list[dict]) -> list[dict]:
    """The rows with the words read in their photos (OCR), where there are any."""
    words = words_for(tables, [r["image_id"] for r in rows])
    return [{**r, "words": words[r["image_id"]]} if r["image_id"] in words else r for r in rows]


def sync_index(
    tables: Tables,
    index: MilvusIndex,
    encoder_id: str,
    encoder_spec: str,
    dim: int,
    log: logging.Logger | None = None,
) -> IndexStats:
    """Bring ``encoder_id``'s collection in line with image_embeddings (see the module).

    ``stats.comparison`` is the final comparison: it matches unless the repair failed.
    """
    log = log or logging.getLogger(__name__)
    healed = make_readable(index, log, expected=[collection_name(encoder_id)])
    name = index.ensure_collection(encoder_id, dim, encoder_spec)
    stats = IndexStats(collection=name, healed=healed)
    # Read before the rows: words written meanwhile are picked up by the next sync.
    text_version = tables.version("photo_text") if tables.exists("photo_text") else None
    version = tables.version("image_embeddings")
    synced = index.synced_version(name)
    touched: tuple[list[str], list[str]] | None = None  # ids upserted, ids deleted
    if synced == version:
        stats.mode, touched = "noop", ([], [])
    elif synced is not None and synced < version:
        touched = _apply_changes(tables, index, name, encoder_id, synced + 1, stats, log)
        stats.mode = "incremental"
    if touched is None:
        stats.mode = "rebuild"
        _rebuild(tables, index, name, encoder_id, stats, log)
        comparison = compare_ids(tables, index, name, encoder_id)
    else:
        texts = _apply_text_changes(tables, index, name, encoder_id, text_version, touched, log)
        stats.upserted += len(texts)
        if texts and stats.mode == "noop":
            stats.mode = "incremental"
        touched = (touched[0] + texts, touched[1])
        comparison = quick_check(tables, index, name, encoder_id, *touched)
        if not comparison.matches:
            log.warning(
                "index %s: %d rows for %d in image_embeddings, %d of this run's ids wrong; "
                "comparing every id",
                name,
                comparison.index_rows,
                comparison.table_rows,
                len(comparison.missing) + len(comparison.ghosts),
            )
            comparison = compare_ids(tables, index, name, encoder_id)
    if not comparison.matches:
        comparison = repair(tables, index, name, encoder_id, comparison, stats, log)
        if stats.mode in ("noop", "incremental"):
            stats.mode = "repair"
    stats.comparison = comparison
    index.flush(name)  # searches stay fast: no row left in Milvus Lite's memtable
    if comparison.matches:
        props = {PROP_SYNCED_VERSION: str(version), PROP_SYNCED_AT: datetime.now(UTC).isoformat()}
        if text_version is not None:
            props[PROP_TEXT_VERSION] = str(text_version)
        index.set_properties(name, **props)
    stats.rows = comparison.index_rows
    stats.synced_version = version
    log.info(
        "index %s (%s): %d upserted, %d deleted, %d rows, repaired %s, synced to Delta v%d",
        name,
        stats.mode,
        stats.upserted,
        stats.deleted,
        stats.rows,
        stats.repaired,
        version,
    )
    return stats


def repair(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    comparison: IdComparison,
    stats: IndexStats,
    log: logging.Logger,
) -> IdComparison:
    """Put back what is missing and drop the ghosts, then compare every id again."""
    # Rows lost or added behind our back (a restored file, manual edits, a crash): the
    # table is the truth.
    log.warning(
        "index %s differs from image_embeddings: %d missing, %d ghosts; repairing",
        name,
        len(comparison.missing),
        len(comparison.ghosts),
    )
    _repair(tables, index, name, encoder_id, comparison, stats)
    return compare_ids(tables, index, name, encoder_id)


def audit_index(
    tables: Tables, index: MilvusIndex, encoder_id: str, log: logging.Logger | None = None
) -> tuple[IdComparison, IndexStats]:
    """Compare every id of ``encoder_id``'s collection with the table's and repair what
    drifted: (the comparison before repair, stats whose comparison is the one after)."""
    log = log or logging.getLogger(__name__)
    name = collection_name(encoder_id)
    stats = IndexStats(collection=name, mode="audit")
    if not index.client.has_collection(name):
        return IdComparison(
            tables.count_equal("image_embeddings", "encoder_id", encoder_id), 0, "", ""
        ), stats
    before = compare_ids(tables, index, name, encoder_id)
    stats.comparison = before
    if not before.matches:
        stats.comparison = repair(tables, index, name, encoder_id, before, stats, log)
    stats.rows = stats.comparison.index_rows
    return before, stats


def activate(index: MilvusIndex, name: str, keep_old: bool = False) -> list[str]:
    """Point the alias at ``name`` (a synced, checked collection); drop the others.

    Search follows the alias, so it answers from the previous collection until this call,
    and from the new one right after: it never goes dark and never mixes two encoders.
    """
    index.point_alias(name)
    if keep_old:
        return []
    dropped = [c for c in index.collections() if c != name]
    for c in dropped:
        index.client.drop_collection(c)
        index.forget(c)
    return dropped


def _apply_changes(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    start: int,
    stats: IndexStats,
    log: logging.Logger,
) -> tuple[list[str], list[str]] | None:
    """Apply the change feed from version ``start``: (ids upserted, ids deleted), or None
    when it cannot be read."""
    quoted = encoder_id.replace("'", "''")
    try:
        feed = pa.RecordBatchReader.from_stream(
            tables.open("image_embeddings").load_cdf(
                starting_version=start, predicate=f"encoder_id = '{quoted}'"
            )
        ).read_all()
    except Exception as e:  # vacuumed or otherwise unreadable: rebuild instead
        log.warning("change feed from v%d unreadable (%s); rebuilding the index", start, e)
        return None
    rows = [r for r in feed.to_pylist() if r["encoder_id"] == encoder_id]
    # The last change per image wins; within a commit a postimage follows its preimage.
    order = {"delete": 0, "update_preimage": 1, "insert": 2, "update_postimage": 3}
    last: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["_commit_version"], order[r["_change_type"]])):
        if r["_change_type"] != "update_preimage":
            last[r["image_id"]] = r
    upserts = _with_words(tables, [_row(r) for r in last.values() if r["_change_type"] != "delete"])
    deletes = [i for i, r in last.items() if r["_change_type"] == "delete"]
    for i in range(0, len(upserts), BATCH):
        stats.upserted += index.upsert(name, upserts[i : i + BATCH])
    stats.deleted += index.delete(name, deletes)
    return [r["image_id"] for r in upserts], deletes


def _rows(tables: Tables, encoder_id: str, ids: list[str] | None = None) -> Iterator[list[dict]]:
    """The index rows of ``encoder_id`` (only ``ids`` if given), streamed from the table."""
    quoted = encoder_id.replace("'", "''")
    sql = (
        "SELECT image_id, path, labels, embedding FROM image_embeddings "
        f"WHERE encoder_id = '{quoted}'"
    )
    if ids is not None:
        sql += " AND image_id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"
    for batch in tables.query("image_embeddings", sql):
        yield _with_words(tables, [_row(r) for r in batch.to_pylist()])


def _apply_text_changes(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    text_version: int | None,
    touched: tuple[list[str], list[str]],
    log: logging.Logger,
) -> list[str]:
    """Re-upsert the photos whose words changed since the collection's photo_text version
    (those this run upserted already carry theirs); the ids upserted."""
    if text_version is None:
        return []
    synced = index.synced_version(name, PROP_TEXT_VERSION)
    if synced == text_version:
        return []
    changed: set[str] | None = None
    if synced is not None and synced < text_version:
        try:
            feed = pa.RecordBatchReader.from_stream(
                tables.open("photo_text").load_cdf(
                    starting_version=synced + 1, columns=["image_id"]
                )
            ).read_all()
            changed = set(feed.column("image_id").to_pylist())
        except Exception as e:  # vacuumed or otherwise unreadable: every photo with words
            log.warning("photo_text change feed from v%d unreadable (%s)", synced + 1, e)
    if changed is None:
        sql = "SELECT image_id FROM photo_text WHERE text <> ''"
        changed = {r["image_id"] for b in tables.query("photo_text", sql) for r in b.to_pylist()}
    done = set(touched[0]) | set(touched[1])
    ids = sorted(changed - done)
    upserted: list[str] = []
    for start in range(0, len(ids), REPAIR_SCAN):
        for batch in _rows(tables, encoder_id, ids[start : start + REPAIR_SCAN]):
            for i in range(0, len(batch), BATCH):
                index.upsert(name, batch[i : i + BATCH])
            upserted += [r["image_id"] for r in batch]
    if upserted:
        log.info("index %s: words of %d photos updated from photo_text", name, len(upserted))
    return upserted


def _rebuild(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    stats: IndexStats,
    log: logging.Logger,
) -> None:
    # Upserts only: rows the table no longer has are ghosts, which the comparison after the
    # sync finds and deletes without holding every id.
    rows = 0
    for batch in _rows(tables, encoder_id):
        for i in range(0, len(batch), BATCH):
            stats.upserted += index.upsert(name, batch[i : i + BATCH])
        rows += len(batch)
    log.info("rebuilt %s from image_embeddings: %d rows", name, rows)


def _repair(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    comparison: IdComparison,
    stats: IndexStats,
) -> None:
    for start in range(0, len(comparison.missing), REPAIR_SCAN):
        for batch in _rows(tables, encoder_id, comparison.missing[start : start + REPAIR_SCAN]):
            for i in range(0, len(batch), BATCH):
                stats.upserted += index.upsert(name, batch[i : i + BATCH])
    for start in range(0, len(comparison.ghosts), BATCH):
        stats.deleted += index.delete(name, comparison.ghosts[start : start + BATCH])
    stats.repaired_missing += len(comparison.missing)
    stats.repaired_ghosts += len(comparison.ghosts)
