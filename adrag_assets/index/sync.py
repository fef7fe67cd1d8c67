"""Sync the Milvus collection of one encoder with ``image_embeddings``.

The collection remembers the Delta version it was last synced to. A sync reads Delta's
change data feed from the next version on and applies, per image, the last change: an
upsert or a delete keyed by ``image_id``. With no recorded version (a new collection), a
table that was rewritten, or a change feed that is gone (vacuumed), it rebuilds from the
table instead: the table is the truth and the index is derived.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa

from adrag_assets.index.milvus import PROP_SYNCED_AT, PROP_SYNCED_VERSION, MilvusIndex
from adrag_assets.tables import Tables

BATCH = 500


@dataclass
class IndexStats:
    collection: str = ""
    mode: str = ""  # "rebuild", "incremental", "noop" or "repair"
    upserted: int = 0
    deleted: int = 0
    rows: int = 0
    synced_version: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _row(r: dict) -> dict:
    return {
        "image_id": r["image_id"],
        "path": r["path"],
        "labels": json.loads(r["labels"] or "{}"),
        "vector": list(r["embedding"]),
    }


def sync_index(
    tables: Tables,
    index: MilvusIndex,
    encoder_id: str,
    encoder_spec: str,
    dim: int,
    log: logging.Logger | None = None,
) -> IndexStats:
    log = log or logging.getLogger(__name__)
    name = index.ensure_collection(encoder_id, dim, encoder_spec)
    stats = IndexStats(collection=name)
    version = tables.version("image_embeddings")
    synced = index.synced_version(name)
    if synced == version:
        stats.mode = "noop"
    elif (
        synced is not None
        and synced < version
        and _apply_changes(tables, index, name, encoder_id, synced + 1, stats, log)
    ):
        stats.mode = "incremental"
    else:
        stats.mode = "rebuild"
        _rebuild(tables, index, name, encoder_id, stats, log)
    expected = tables.count("image_embeddings", f"encoder_id = '{encoder_id}'")
    if stats.mode != "rebuild" and index.count(name) != expected:
        # The index lost or gained rows behind our back (restored file, manual edits):
        # the table is the truth, so reconcile against it.
        log.warning("index %s has %d rows, table %d: repairing", name, index.count(name), expected)
        stats.mode = "repair"
        _rebuild(tables, index, name, encoder_id, stats, log)
    index.set_properties(
        name,
        **{PROP_SYNCED_VERSION: str(version), PROP_SYNCED_AT: datetime.now(UTC).isoformat()},
    )
    stats.rows = index.count(name)
    stats.synced_version = version
    log.info(
        "index %s (%s): %d upserted, %d deleted, %d rows, synced to Delta v%d",
        name,
        stats.mode,
        stats.upserted,
        stats.deleted,
        stats.rows,
        version,
    )
    return stats


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
    return dropped


def _apply_changes(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    start: int,
    stats: IndexStats,
    log: logging.Logger,
) -> bool:
    """Apply the change feed from version ``start``; False when it cannot be read."""
    try:
        feed = pa.RecordBatchReader.from_stream(
            tables.open("image_embeddings").load_cdf(starting_version=start)
        ).read_all()
    except Exception as e:  # vacuumed or otherwise unreadable: rebuild instead
        log.warning("change feed from v%d unreadable (%s); rebuilding the index", start, e)
        return False
    rows = [r for r in feed.to_pylist() if r["encoder_id"] == encoder_id]
    # The last change per image wins; within a commit a postimage follows its preimage.
    order = {"delete": 0, "update_preimage": 1, "insert": 2, "update_postimage": 3}
    last: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["_commit_version"], order[r["_change_type"]])):
        if r["_change_type"] != "update_preimage":
            last[r["image_id"]] = r
    upserts = [_row(r) for r in last.values() if r["_change_type"] != "delete"]
    deletes = [i for i, r in last.items() if r["_change_type"] == "delete"]
    for i in range(0, len(upserts), BATCH):
        stats.upserted += index.upsert(name, upserts[i : i + BATCH])
    stats.deleted += index.delete(name, deletes)
    return True


def _rebuild(
    tables: Tables,
    index: MilvusIndex,
    name: str,
    encoder_id: str,
    stats: IndexStats,
    log: logging.Logger,
) -> None:
    sql = (
        "SELECT image_id, path, labels, embedding FROM image_embeddings "
        f"WHERE encoder_id = '{encoder_id}'"
    )
    wanted: set[str] = set()
    for batch in tables.query("image_embeddings", sql):
        rows = [_row(r) for r in batch.to_pylist()]
        wanted.update(r["image_id"] for r in rows)
        for i in range(0, len(rows), BATCH):
            stats.upserted += index.upsert(name, rows[i : i + BATCH])
    stats.deleted = index.delete(name, sorted(index.ids(name) - wanted))
    log.info("rebuilt %s from image_embeddings: %d rows", name, len(wanted))
