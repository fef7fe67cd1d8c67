"""Delta maintenance: compact small files, checkpoint, vacuum what no reader still needs.

Every ingest chunk is a commit and every merge rewrites the files holding matched rows, so
the tables grow in small files and in tombstoned copies (``images`` held 634 MB for 355 MB
of photos in 316 commits). :func:`maintain_tables` brings them back, per table:

1. ``optimize.compact``: small files into files of about :data:`TARGET_FILE_BYTES`. Its commit
   changes no data (``dataChange=false``), so change-feed readers skip it.
2. ``vacuum`` (full: tombstones and orphans of crashed writes, ``_change_data`` files too),
   keeping whatever a change-feed consumer has not read yet (see below).
3. ``create_checkpoint``, so a reader opens the table from one file instead of replaying
   every commit; then ``cleanup_metadata`` (commits past Delta's log retention, 30 days), but
   only when no consumer still needs an old commit.

No z-order: rows are looked up by ``image_id``, a sha256 that clusters nothing, and
z-ordering rewrites every file each time, i.e. all the photo bytes every night.

**Consumers of change feeds.** A consumer reads a table's change feed from the version after
the one it recorded (the Milvus index: ``adrag.synced_version`` on each collection). Its
oldest needed version ``v`` is kept readable by a retention period covering ``v``'s commit
time: vacuum only deletes files removed (tombstones) or written (change data) before
``now - retention``, and everything version ``v`` and later need was removed or written at
or after that commit. A consumer behind by more than the longest retention
(``ADRAG_MAINTENANCE_MAX_RETENTION_HOURS``), or one whose files were vacuumed anyway, is not
broken: reading its feed fails and its sync rebuilds from the table
(:func:`adrag_assets.index.sync._apply_changes` returns False). A consumer that cannot be
asked (Milvus down) makes vacuum skip that table: its needs are unknown.

Readers outside the writers' pool (the upload sensor, ``adrag status``) read a snapshot in
one short query; with the default retention of 0 hours one that opened the table just
before a vacuum may fail once, and is retried on its next tick.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import obstore
import pyarrow as pa
from obstore.store import from_url

from adrag_assets.embeddings.sync import synced_images_version, synced_labels_version
from adrag_assets.redact import redact
from adrag_assets.tables import TABLES, Tables

MB = 1 << 20
# Compaction target per table; the others take deltalake's default (100 MB, one file here).
# ``images`` holds the photo bytes, and a merge rewrites every file holding a matched row:
# smaller files bound what one relabelled photo costs until the next vacuum.
TARGET_FILE_BYTES = {"images": 32 * MB}
HOUR_S = 3600

# The change-feed consumers, per table: a name and a function returning the last version
# the consumer applied (None: it has none and reads the whole table). Wire a new one here.
Consumer = Callable[[Tables], int | None]


def change_feed_consumers(
    index_version: Consumer, text_version: Consumer | None = None
) -> dict[str, dict[str, Consumer]]:
    """``{table: {consumer: last applied version}}``; ``index_version`` answers for the
    Milvus collections (:func:`milvus_synced_version` in production), ``text_version`` for
    the photo_text version their words come from (none: photo_text's feed is read by no one
    known, and a vacuumed feed makes the index re-read every photo's words, which is safe)."""
    consumers = {
        "image_embeddings": {"milvus index": index_version},
        "images": {"embeddings": synced_images_version},
        "photo_labels": {"embeddings": synced_labels_version},
    }
    if text_version is not None:
        consumers["photo_text"] = {"milvus index": text_version}
    return consumers


def milvus_synced_version(index, prop: str = "adrag.synced_version") -> Consumer:
    """The oldest Delta version any collection was synced to (each collection reads the
    feed from there), by the collection property ``prop``; None when no collection recorded
    one. (``index`` is a MilvusIndex, not imported here: pymilvus.)"""

    def synced(_tables: Tables) -> int | None:
        versions = [index.synced_version(c, prop) for c in index.collections()]
        known = [v for v in versions if v is not None]
        return min(known) if known else None

    return synced


@dataclass
class TableFigures:
    """One table's size, from its log (live) and from listing its storage."""

    version: int
    live_files: int  # data files of the current version (the log's add actions)
    live_bytes: int
    stored_files: int  # every data file on storage: live, tombstoned, change data, orphans
    stored_bytes: int
    log_bytes: int  # the _delta_log folder: commits and checkpoints
    photo_bytes: int | None = None  # images only: the live rows' photos (sum of `size`)

    @property
    def total_bytes(self) -> int:
        return self.stored_bytes + self.log_bytes


@dataclass
class TableMaintenance:
    table: str
    before: TableFigures
    after: TableFigures
    compacted_files: int = 0  # small files rewritten
    vacuumed_files: int = 0
    retention_hours: int | None = None  # None: vacuum skipped (see note)
    needed_version: int | None = None  # the oldest version a consumer still reads
    checkpoint: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        for k in ("before", "after"):
            out[k]["total_bytes"] = getattr(self, k).total_bytes
        return out


def figures(tables: Tables, name: str) -> TableFigures:
    """The table's size now (creating it empty if missing, like every other reader)."""
    dt = tables.open(name)
    adds = pa.table(dt.get_add_actions())
    stored_files = stored_bytes = log_bytes = 0
    for path, size in _listing(tables.uri(name)):
        if path.startswith("_delta_log/"):
            log_bytes += size
        else:
            stored_files += 1
            stored_bytes += size
    photo_bytes = None
    if name == "images":
        total = tables.query("images", "SELECT SUM(size) AS b FROM images").read_all()
        photo_bytes = int(total.column("b")[0].as_py() or 0)
    return TableFigures(
        version=dt.version(),
        live_files=adds.num_rows,
        live_bytes=sum(adds.column("size_bytes").to_pylist()),
        stored_files=stored_files,
        stored_bytes=stored_bytes,
        log_bytes=log_bytes,
        photo_bytes=photo_bytes,
    )


def _listing(uri: str) -> list[tuple[str, int]]:
    """(path under the table, size) of every object of the table, on a disk or a store.

    obstore reads the provider's standard variables (``AWS_*``) as deltalake does."""
    if "://" not in uri:
        root = Path(uri)
        return [(p.relative_to(root).as_posix(), p.stat().st_size) for p in _files(root)]
    store = from_url(uri)
    return [(o["path"], o["size"]) for batch in obstore.list(store) for o in batch]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def needed_version(
    tables: Tables, name: str, consumers: Mapping[str, Consumer], version: int
) -> tuple[int | None, str]:
    """The oldest version of ``name`` a consumer will still read and who needs it (None:
    every consumer is up to date or has nothing recorded). Raises what a consumer raises."""
    needed, who = None, ""
    for consumer, synced_version in consumers.items():
        synced = synced_version(tables)
        if synced is not None and synced < version and (needed is None or synced + 1 < needed):
            needed, who = synced + 1, f"{consumer} synced to v{synced}"
    return needed, who


# Commits that change no rows: a consumer that missed only these needs nothing.
NO_DATA_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})


def first_data_commit(tables: Tables, name: str, version: int) -> tuple[int, float] | None:
    """The first commit at or after ``version`` that changes rows: (version, epoch
    seconds). None when there is none, or when the commits are gone (cleaned up)."""
    dt = tables.open(name)
    commits = dt.history(limit=dt.version() - version + 1)
    found = None
    for commit in commits:  # newest first
        if commit["version"] < version:
            break
        if commit.get("operation") not in NO_DATA_OPERATIONS and "timestamp" in commit:
            found = (commit["version"], commit["timestamp"] / 1000)
    return found


def retention_for(
    tables: Tables,
    name: str,
    needed: int | None,
    floor_hours: int,
    max_hours: int,
    now: float | None = None,
) -> tuple[int, str]:
    """Hours of removed files to keep so that the feed from ``needed`` stays readable, and
    why (empty: nothing to keep beyond ``floor_hours``)."""
    if needed is None:
        return floor_hours, ""
    first = first_data_commit(tables, name, needed)
    if first is None:
        return floor_hours, f"no data changed since v{needed - 1}: nothing to keep for it"
    version, committed = first
    age_h = max(0.0, ((now or time.time()) - committed) / HOUR_S)
    # Whole hours (deltalake's unit), plus one for files written just before their commit.
    hours = max(floor_hours, math.ceil(age_h) + 1)
    if hours > max_hours:
        return max_hours, (
            f"v{version} is {age_h:.0f} h old, past the {max_hours} h retention cap: "
            "its consumer rebuilds on its next sync"
        )
    return hours, f"keeping {hours} h of removed files for the feed from v{version}"


def maintain_table(
    tables: Tables,
    name: str,
    consumers: Mapping[str, Consumer],
    retention_hours: int = 0,
    max_retention_hours: int = 168,
    ignore_consumers: bool = False,
    log: logging.Logger | None = None,
) -> TableMaintenance:
    """Compact, vacuum, checkpoint one table (see the module); the caller holds the writers'
    pool, so no commit happens meanwhile. ``ignore_consumers`` vacuums down to
    ``retention_hours`` whatever consumers still need (they will rebuild)."""
    log = log or logging.getLogger(__name__)
    before = figures(tables, name)
    result = TableMaintenance(table=name, before=before, after=before)
    needs_known = True
    if ignore_consumers:
        result.notes.append("consumers ignored: a consumer behind rebuilds on its next sync")
    else:
        # Asked before compacting: a consumer synced to the version before is up to date.
        try:
            result.needed_version, who = needed_version(tables, name, consumers, before.version)
            if who:
                result.notes.append(f"{who} reads from v{result.needed_version}")
        except Exception as e:  # a consumer we cannot ask: we cannot know what it needs
            needs_known = False
            result.notes.append(
                f"vacuum skipped: cannot ask the consumers of {name} what they still read "
                f"({redact(f'{type(e).__name__}: {e}')})"
            )
    metrics = tables.open(name).optimize.compact(target_size=TARGET_FILE_BYTES.get(name))
    result.compacted_files = int(metrics.get("numFilesRemoved", 0))
    if needs_known:
        hours, why = retention_for(
            tables, name, result.needed_version, retention_hours, max_retention_hours
        )
        if why:
            result.notes.append(why)
        result.retention_hours = hours
        deleted = tables.open(name).vacuum(
            retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=True
        )
        result.vacuumed_files = len(deleted)
    dt = tables.open(name)
    dt.create_checkpoint()
    result.checkpoint = True
    if needs_known and result.needed_version is None:
        dt.cleanup_metadata()
    result.after = figures(tables, name)
    for note in result.notes:
        log.info("%s: %s", name, note)
    log.info(
        "%s: v%d -> v%d, data files %d -> %d live, %d -> %d stored (%.1f -> %.1f MB), "
        "%d compacted, %d vacuumed",
        name,
        before.version,
        result.after.version,
        before.live_files,
        result.after.live_files,
        before.stored_files,
        result.after.stored_files,
        before.total_bytes / MB,
        result.after.total_bytes / MB,
        result.compacted_files,
        result.vacuumed_files,
    )
    return result


def maintain_tables(
    tables: Tables,
    index_version: Consumer,
    retention_hours: int = 0,
    max_retention_hours: int = 168,
    ignore_consumers: bool = False,
    log: logging.Logger | None = None,
    text_version: Consumer | None = None,
) -> list[TableMaintenance]:
    """:func:`maintain_table` for every table adrag keeps that exists, in a fixed order."""
    consumers = change_feed_consumers(index_version, text_version)
    return [
        maintain_table(
            tables,
            name,
            consumers.get(name, {}),
            retention_hours,
            max_retention_hours,
            ignore_consumers,
            log,
        )
        for name in TABLES
        if tables.exists(name)
    ]
