"""Keep ``image_embeddings`` in step with ``images`` for the configured encoder.

Work follows the change. ``images`` keeps Delta's change data feed, and ``image_embeddings``
records (table properties ``adrag.images_version`` and ``adrag.images_encoder``) the
``images`` version its rows were last synced to, and for which encoder. A run reads the
feed after that version and applies, per image, its last change: a new image is embedded, a
moved or relabelled one gets its path and labels updated in place, and the rows of a deleted
one are removed (any encoder). The record is written after the rows, so a run that dies in
between is redone by the next one; redoing is idempotent (images that already have a vector
are not embedded again).

Labels live in ``photo_labels`` (no photo bytes in it): a row is embedded with its labels from
there, and ``photo_labels``' own change feed, followed the same way (``adrag.labels_version``),
gives the rows whose labels changed, updated in place with their vectors kept. A relabel
never reads ``images``.

Each row records the decode and model code version its vector was made with
(``embed_version``, see :mod:`adrag_assets.embeddings.versions`). After the changes, a run
re-embeds at most ``reembed_batch`` rows of an older version; the automation runs again
while some are left (the ``embeddings_current`` check), so an upgrade re-embeds the library
in bounded runs. Rows from before versions were recorded are looked at by their photo's
header: only those the decode fix changes get a new vector, the rest are marked current.

With no record for the configured encoder (first ingest, a new encoder), a record the feed
cannot serve (vacuumed, a recreated table) or the feed just turned on, the run reconciles
the whole table instead, by SQL joins streamed in batches: never every row in Python.

With a Ray cluster configured (:mod:`adrag_assets.embeddings.ray_embed`), a run with enough
new images hands their ids to it and writes the vectors it streams back.

Photos are read as their renditions (small upright JPEGs made at ingest, never the originals;
rows written before renditions fall back to their stored bytes) and stream from Delta in
batches: while the model encodes one
batch, a worker thread decodes and preprocesses the next. Each vector written is checked
(finite, unit norm) on the way, which is what the run's asset check reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from adrag_assets.embeddings.pipeline import encode_stream, rows_of
from adrag_assets.embeddings.progress import (
    DONE,
    EMBEDDING,
    FAILED,
    REEMBEDDING,
    Progress,
)
from adrag_assets.embeddings.versions import (
    EMBED_VERSION,
    FAILED_VERSION,
    changed_by_decode_2,
)
from adrag_assets.tables import EMBEDDINGS, Tables

if TYPE_CHECKING:
    from adrag_assets.embeddings.encoder import ClipEncoder
    from adrag_assets.embeddings.ray_embed import RayEmbedder

WRITE_EVERY = 256  # rows per Delta commit while embedding
LOOKUP = 500  # ids per IN (...) query
SHOWN = 10  # bad vectors named in the stats
NORM_TOLERANCE = 1e-3
PROP_IMAGES_VERSION = "adrag.images_version"
PROP_IMAGES_ENCODER = "adrag.images_encoder"
PROP_LABELS_VERSION = "adrag.labels_version"  # photo_labels' version, for the same encoder
_ORDER = {"delete": 0, "update_preimage": 1, "insert": 2, "update_postimage": 3}
_LIGHT = ["image_id", "path"]
# The picture the model reads: the rendition, or the original's bytes in rows from before.
_PICTURE = "COALESCE(rendition, bytes) AS bytes"


@dataclass
class EmbedStats:
    encoder_id: str = ""
    mode: str = ""  # "changes" (from images' change feed), "full" (whole-table reconcile), "noop"
    images_read: int = 0  # rows of images this run looked at (feed rows, or the whole table)
    embedded_on: str = "this process"  # or the Ray cluster's actors (ray_embed.py)
    embedded: int = 0  # new vectors computed
    updated: int = 0  # path changed, vector kept
    relabelled: int = 0  # labels changed (photo_labels' feed), vector kept
    labels_read: int = 0  # rows of photo_labels looked at (its feed, or the whole table)
    deleted: int = 0  # rows of images that no longer exist (any encoder)
    unchanged: int = 0  # full mode only: rows already right
    failed: int = 0  # images that could not be decoded for the model
    reembedded: int = 0  # rows of an older code version given a new vector
    marked_current: int = 0  # rows without a version whose vector the decode fix leaves as is
    stale: int = 0  # rows of this encoder of an older code version, left after this run
    rows: int = 0  # rows for this encoder, now
    version: int = 0
    images_version: int = 0  # the images version now synced
    seconds: float = 0.0
    # The vectors this run wrote: not finite or not of unit norm (first SHOWN ids), worst error.
    bad_vectors: list[str] = field(default_factory=list)
    bad_count: int = 0
    max_norm_error: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 2)}


def _quoted(ids: Iterable[str]) -> str:
    return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)


def _eid_sql(encoder_id: str) -> str:
    return "'" + encoder_id.replace("'", "''") + "'"


def labels_of(tables: Tables, ids: Iterable[str]) -> dict[str, str]:
    """{image_id: labels JSON} from ``photo_labels`` (an image without a row: absent)."""
    ids = sorted(set(ids))
    out: dict[str, str] = {}
    if not ids or not tables.exists("photo_labels"):
        return out
    for i in range(0, len(ids), LOOKUP):
        where = f"image_id IN ({_quoted(ids[i : i + LOOKUP])})"
        for r in tables.read("photo_labels", ["image_id", "labels"], where).to_pylist():
            out[r["image_id"]] = r["labels"]
    return out


def synced_labels_version(tables: Tables) -> int | None:
    """The ``photo_labels`` version image_embeddings' labels were last synced to, or None."""
    if not tables.exists("image_embeddings"):
        return None
    v = tables.properties("image_embeddings").get(PROP_LABELS_VERSION)
    return int(v) if v not in (None, "") else None


def synced_images_version(tables: Tables) -> int | None:
    """The ``images`` version image_embeddings was last synced to (for the encoder recorded
    with it), or None. The change feed after it is still to be read: vacuum must keep it."""
    if not tables.exists("image_embeddings"):
        return None
    v = tables.properties("image_embeddings").get(PROP_IMAGES_VERSION)
    return int(v) if v not in (None, "") else None


def norm_errors(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Which rows are not finite or not of unit norm, and the worst norm error among the rest."""
    if len(vectors) == 0:
        return np.zeros(0, bool), 0.0
    vectors = np.asarray(vectors, np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    err = np.abs(np.linalg.norm(np.where(finite[:, None], vectors, 0), axis=1) - 1.0)
    bad = ~finite | (err > NORM_TOLERANCE)
    worst = float(err[finite].max()) if finite.any() else float("inf")
    return bad, worst if finite.all() else float("inf")


def iter_image_batches(tables: Tables, ids: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Stream (image_id, path, labels, bytes) for ``ids`` from Delta, ``batch_size`` at a
    time; ``bytes`` is the picture the model reads (see ``_PICTURE``)."""
    for start in range(0, len(ids), batch_size):
        part = ids[start : start + batch_size]
        sql = f"SELECT image_id, path, {_PICTURE} FROM images WHERE image_id IN ({_quoted(part)})"
        table = tables.query("images", sql).read_all()
        labels = labels_of(tables, part)
        ids = table.column("image_id").to_pylist()
        table = table.add_column(2, "labels", pa.array([labels.get(i) for i in ids], pa.string()))
        yield from table.to_batches()


def _rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of ``size`` (the last may be smaller)."""
    held: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = batch.slice(0, size - n)
            batch = batch.slice(take.num_rows)
            held.append(take)
            n += take.num_rows
            if n == size:
                yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]
                held, n = [], 0
    if n:
        yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]


def sync_embeddings(
    tables: Tables,
    encoder: ClipEncoder,
    batch_size: int = 32,
    log: logging.Logger | None = None,
    reembed_batch: int = 500,
    ray: RayEmbedder | None = None,
    progress: Progress | None = None,
) -> EmbedStats:
    """Bring the configured encoder's rows in line with ``images`` (see the module); with
    ``ray``, a big enough batch of new images is embedded on a Ray cluster instead.
    ``progress`` hears how far the embedding is, batch by batch (``progress.py``)."""
    log = log or logging.getLogger(__name__)
    progress = progress or Progress()
    eid = encoder.encoder_id
    stats = EmbedStats(encoder_id=eid)
    ensure_version_column(tables)
    if tables.exists("images"):
        tables.ensure_columns("images")  # a table from before renditions: null in old rows
    # The feed starts when it is turned on: whatever came before needs one full reconcile.
    feed_new = tables.ensure_configuration("images")
    target = tables.version("images")
    props = tables.properties("image_embeddings")
    synced = props.get(PROP_IMAGES_VERSION)
    synced = int(synced) if synced and props.get(PROP_IMAGES_ENCODER) == eid else None
    work = None
    if feed_new or synced is None or synced > target:
        reason = "the feed was just turned on" if feed_new else "no record for this encoder"
        if synced is not None and synced > target:
            reason = f"images is at v{target}, before the recorded v{synced} (rewritten?)"
        log.info("embeddings for %s: full reconcile (%s)", eid, reason)
    elif synced == target:
        stats.mode, work = "noop", (0, iter(()), iter(()))
    else:
        work = _from_feed(tables, eid, synced + 1, target, batch_size, stats, log)
    if work is None:
        work = _full(tables, eid, batch_size, stats, log)
    todo, ids, batches = work
    log.info(
        "embeddings for %s (%s, %d image rows read): %d to embed, %d path/label updates, "
        "%d deleted",
        eid,
        stats.mode,
        stats.images_read,
        todo,
        stats.updated,
        stats.deleted,
    )
    if todo:
        # A model switch re-embeds the library (counted on from the rows a crashed run left);
        # otherwise these are new photos.
        have = tables.count_equal("image_embeddings", "encoder_id", eid)
        switch = synced is None and tables.count("image_embeddings") > have
        first = have if switch else 0
        progress.start(eid, REEMBEDDING if switch else EMBEDDING, first, first + todo)
    if ray is not None and ray.takes(todo):
        try:
            ray.embed(tables, eid, ids, target, stats, log, progress)
        except BaseException:
            progress.finish(FAILED)
            raise
        progress.finish(DONE)
    else:
        _embed(tables, encoder, todo, batches, stats, log, batch_size, progress=progress)
    _refresh_stale(tables, encoder, reembed_batch, batch_size, stats, log, progress)
    labels_synced = props.get(PROP_LABELS_VERSION) if synced is not None else None
    labels_target = _sync_labels(tables, eid, labels_synced, stats, log)
    record = {PROP_IMAGES_VERSION: str(target), PROP_IMAGES_ENCODER: eid}
    if labels_target is not None:
        record[PROP_LABELS_VERSION] = str(labels_target)
    if any(props.get(k) != v for k, v in record.items()):
        # After the rows: a run that dies before this line is redone, idempotently.
        tables.set_properties("image_embeddings", record)
    stats.images_version = target
    stats.rows = tables.count_equal("image_embeddings", "encoder_id", eid)
    stats.stale = count_stale(tables, eid)
    stats.version = tables.version("image_embeddings")
    log.info(
        "embedded %d images in %.1fs (%.1f img/s); %d rows for %s, synced to images v%d",
        stats.embedded,
        stats.seconds,
        stats.images_per_s,
        stats.rows,
        eid,
        target,
    )
    return stats


def _from_feed(
    tables: Tables,
    eid: str,
    start: int,
    end: int,
    batch_size: int,
    stats: EmbedStats,
    log: logging.Logger,
) -> tuple[int, Iterator[list[str]], Iterator[pa.RecordBatch]] | None:
    """Apply images' changes in versions ``start``..``end``: deletes and path/label updates
    now; (how many to embed, their ids, their photos in batches). None when the feed cannot
    be read."""
    images = tables.open("images")
    try:
        feed = pa.RecordBatchReader.from_stream(
            images.load_cdf(
                starting_version=start,
                ending_version=end,
                columns=[*_LIGHT, "_change_type", "_commit_version"],
            )
        ).read_all()
    except Exception as e:  # vacuumed or otherwise unreadable: reconcile the whole table
        log.warning("images' change feed v%d..v%d unreadable (%s); full reconcile", start, end, e)
        return None
    stats.mode = "changes"
    stats.images_read = feed.num_rows
    last: dict[str, dict] = {}
    rows = feed.to_pylist()
    for r in sorted(rows, key=lambda r: (r["_commit_version"], _ORDER[r["_change_type"]])):
        if r["_change_type"] != "update_preimage":
            last[r["image_id"]] = r
    gone = [i for i, r in last.items() if r["_change_type"] == "delete"]
    alive = {i: r for i, r in last.items() if r["_change_type"] != "delete"}
    stats.deleted = tables.delete_keys("image_embeddings", "image_id", gone)
    ids = sorted(alive)
    have: set[str] = set()
    moved = []
    for i in range(0, len(ids), LOOKUP):
        sql = (
            "SELECT image_id, path FROM image_embeddings "
            f"WHERE encoder_id = {_eid_sql(eid)} AND image_id IN ({_quoted(ids[i : i + LOOKUP])})"
        )
        for r in tables.query("image_embeddings", sql).read_all().to_pylist():
            have.add(r["image_id"])
            now = alive[r["image_id"]]
            if r["path"] != now["path"]:
                moved.append({"image_id": r["image_id"], "path": now["path"]})
    stats.updated = _update_paths(tables, eid, moved)
    todo = [i for i in ids if i not in have]
    return (
        len(todo),
        iter([todo]),
        _rebatch(_feed_photos(tables, start, end, todo, alive, batch_size), batch_size),
    )


def _feed_photos(
    tables: Tables, start: int, end: int, todo: list[str], alive: dict[str, dict], batch_size: int
) -> Iterator[pa.RecordBatch]:
    """(image_id, path, labels, bytes) of ``todo``, read from the feed's own files only."""
    want = set(todo)
    if not want:
        return
    labels = labels_of(tables, want)
    reader = pa.RecordBatchReader.from_stream(
        tables.open("images").load_cdf(
            starting_version=start,
            ending_version=end,
            columns=["image_id", "rendition", "bytes"],
        )
    )
    plain = pa.schema(
        [("image_id", pa.string()), ("rendition", pa.binary()), ("bytes", pa.binary())]
    )
    for batch in reader:
        batch = batch.select(plain.names).cast(plain)  # the feed hands out view types
        picture = pc.coalesce(batch.column("rendition"), batch.column("bytes"))
        batch = pa.record_batch({"image_id": batch.column("image_id"), "bytes": picture})
        ids = batch.column("image_id").to_pylist()
        keep = []
        for k, i in enumerate(ids):
            if i in want:  # an image's bytes are its id's: any of its rows will do
                want.discard(i)
                keep.append(k)
        if keep:
            part = batch.take(pa.array(keep))
            kept = part.column("image_id").to_pylist()
            yield pa.record_batch(
                {
                    "image_id": part.column("image_id"),
                    "path": [alive[i]["path"] for i in kept],
                    "labels": pa.array([labels.get(i) for i in kept], pa.string()),
                    "bytes": part.column("bytes"),
                }
            )
        if not want:
            return
    yield from iter_image_batches(tables, sorted(want), batch_size)  # not in the feed: unusual


def _update_paths(tables: Tables, eid: str, moved: list[dict], column: str = "path") -> int:
    if not moved:
        return 0
    rows = pa.Table.from_pylist([{**m, "encoder_id": eid} for m in moved])
    return tables.update_columns("image_embeddings", rows, ["image_id", "encoder_id"], [column])


def _sync_labels(
    tables: Tables, eid: str, synced: str | None, stats: EmbedStats, log: logging.Logger
) -> int | None:
    """Give this encoder's rows the labels ``photo_labels`` has now: those its feed changed
    after ``synced``, or, with no usable record, every row whose labels differ (a join that
    reads no vector and no photo). The photo_labels version now synced; None without it."""
    if not tables.exists("photo_labels"):
        return None  # made by the images step (from the old labels column of a home before it)
    target = tables.version("photo_labels")
    start = int(synced) + 1 if synced not in (None, "") else None
    if start is not None and start > target + 1:
        start = None  # the table was remade: look at everything
    if start == target + 1:
        return target
    changed: list[dict] | None = None
    if start is not None:
        try:
            feed = pa.RecordBatchReader.from_stream(
                tables.open("photo_labels").load_cdf(
                    starting_version=start,
                    ending_version=target,
                    columns=["image_id", "labels", "_change_type", "_commit_version"],
                )
            ).read_all()
        except Exception as e:  # vacuumed or otherwise unreadable: compare everything
            log.warning("photo_labels' change feed v%d..v%d unreadable (%s)", start, target, e)
        else:
            stats.labels_read = feed.num_rows
            last: dict[str, dict] = {}
            for r in sorted(
                feed.to_pylist(), key=lambda r: (r["_commit_version"], _ORDER[r["_change_type"]])
            ):
                if r["_change_type"] != "update_preimage":
                    last[r["image_id"]] = r
            now = {i: r["labels"] for i, r in last.items() if r["_change_type"] != "delete"}
            ids, changed = sorted(now), []
            for k in range(0, len(ids), LOOKUP):
                sql = (
                    "SELECT image_id, labels FROM image_embeddings WHERE encoder_id = "
                    f"{_eid_sql(eid)} AND image_id IN ({_quoted(ids[k : k + LOOKUP])})"
                )
                for r in tables.query("image_embeddings", sql).read_all().to_pylist():
                    if r["labels"] != now[r["image_id"]]:
                        changed.append({"image_id": r["image_id"], "labels": now[r["image_id"]]})
    if changed is None:
        stats.labels_read = tables.count("photo_labels")
        sql = (
            "SELECT l.image_id AS image_id, l.labels AS labels "
            "FROM photo_labels l JOIN image_embeddings e ON l.image_id = e.image_id "
            f"WHERE e.encoder_id = {_eid_sql(eid)} AND l.labels IS DISTINCT FROM e.labels"
        )
        changed = tables.query("image_embeddings", sql, also=["photo_labels"]).read_all()
        changed = changed.to_pylist()
    stats.relabelled = _update_paths(tables, eid, changed, "labels")
    if stats.relabelled:
        log.info("embeddings for %s: %d rows relabelled, vectors kept", eid, stats.relabelled)
    return target


def _full(
    tables: Tables, eid: str, batch_size: int, stats: EmbedStats, log: logging.Logger
) -> tuple[int, Iterator[list[str]], Iterator[pa.RecordBatch]]:
    """Reconcile with the whole images table, by joins in Delta's engine: only the rows that
    need work come back to Python, and the ids and photos to embed stream in batches (read
    one or the other)."""
    stats.mode = "full"
    tables.open("images")  # both exist from here on, even if empty
    tables.open("image_embeddings")
    both = ["images"]
    stats.images_read = tables.count("images")
    stale_sql = (
        "SELECT DISTINCT image_id FROM image_embeddings "
        "WHERE image_id NOT IN (SELECT image_id FROM images)"
    )
    stale = [
        i
        for b in tables.query("image_embeddings", stale_sql, also=both)
        for i in b.column("image_id").to_pylist()
    ]
    stats.deleted = tables.delete_keys("image_embeddings", "image_id", stale)
    moved_sql = (
        "SELECT i.image_id AS image_id, i.path AS path "
        "FROM images i JOIN image_embeddings e ON i.image_id = e.image_id "
        f"WHERE e.encoder_id = {_eid_sql(eid)} AND i.path IS DISTINCT FROM e.path"
    )
    moved = tables.query("image_embeddings", moved_sql, also=both).read_all().to_pylist()
    stats.updated = _update_paths(tables, eid, moved)
    stats.unchanged = tables.count_equal("image_embeddings", "encoder_id", eid) - stats.updated
    missing = (
        f"FROM images WHERE image_id NOT IN "
        f"(SELECT image_id FROM image_embeddings WHERE encoder_id = {_eid_sql(eid)})"
    )
    todo = int(
        tables.query("images", f"SELECT COUNT(*) AS n {missing}", also=["image_embeddings"])
        .read_all()
        .column("n")[0]
        .as_py()
    )
    if not todo:
        return 0, iter(()), iter(())
    # Ids only from the join: a hash join may hold one side whole, and photos are big.
    ids = tables.query("images", f"SELECT image_id {missing}", also=["image_embeddings"])

    def chunks() -> Iterator[list[str]]:
        for batch in ids:
            part = batch.column("image_id").to_pylist()
            for i in range(0, len(part), WRITE_EVERY):
                yield part[i : i + WRITE_EVERY]

    id_chunks = chunks()

    def photos() -> Iterator[pa.RecordBatch]:
        for part in id_chunks:
            yield from iter_image_batches(tables, part, WRITE_EVERY)

    return todo, id_chunks, _rebatch(photos(), batch_size)


def _embed(
    tables: Tables,
    encoder: ClipEncoder,
    todo: int,
    batches: Iterator[pa.RecordBatch],
    stats: EmbedStats,
    log: logging.Logger,
    batch_size: int,
    on_failed: Callable[[list[str]], None] | None = None,
    progress: Progress | None = None,
) -> None:
    eid = encoder.encoder_id
    started = time.perf_counter()
    pending: list[dict] = []
    if progress is None or progress.report is None:
        # Not started by the caller (nothing to tell anyone): counted for the bar alone.
        progress = Progress()
        progress.start(eid, EMBEDDING, 0, todo)
    report = progress.report

    told = [report.done]  # the count last told to the listener

    def flush() -> None:
        if pending:
            tables.upsert(
                "image_embeddings",
                pa.Table.from_pylist(pending, EMBEDDINGS),
                ["image_id", "encoder_id"],
            )
            pending.clear()
        # Each commit is news: Dagster metadata (the asset's listener) and a log line.
        r = progress.report
        if r is not None and r.done != told[0]:
            told[0] = r.done
            progress.commit()
            log.info("%s (%.1f img/s)", r.line(), r.rate)

    # On a terminal (`adrag ingest`): the whole job's bar, from where it stands.
    bar = tqdm(total=report.total, initial=report.done, desc=report.kind, unit="img", disable=None)
    try:
        for part in encode_stream(encoder, rows_of(batches), batch_size):
            failed = [row["image_id"] for row, _ in part.failures]
            for row, why in part.failures:
                log.warning("%s: cannot decode for the model (%s)", row["path"], why)
            stats.failed += len(failed)
            if on_failed is not None and failed:
                on_failed(failed)
            if part.rows:
                _check_vectors(part.vectors, [r["image_id"] for r in part.rows], stats)
                now = datetime.now(UTC)
                for row, vec in zip(part.rows, part.vectors, strict=True):
                    pending.append(
                        {
                            **row,
                            "encoder_id": eid,
                            "embedding": vec,
                            "embedded_at": now,
                            "embed_version": EMBED_VERSION,
                        }
                    )
                stats.embedded += len(part.rows)
            bar.update(len(part.rows) + len(failed))
            progress.advance(len(part.rows) + len(failed))
            if len(pending) >= WRITE_EVERY:
                flush()
        flush()
    except BaseException:
        progress.finish(FAILED)
        raise
    finally:
        bar.close()
    progress.finish(DONE)
    stats.seconds += time.perf_counter() - started


def ensure_version_column(tables: Tables) -> None:
    """Give a table written before versions were recorded its ``embed_version`` column
    (null in the old rows): an in-place schema change, no row rewritten."""
    from deltalake import Field

    dt = tables.open("image_embeddings")
    if "embed_version" not in dt.schema().to_arrow().names:
        dt.alter.add_columns([Field("embed_version", "string", nullable=True)])


def _stale_sql(eid: str) -> str:
    """Rows of ``eid`` made by other code than now (null: before versions were recorded),
    except those whose photo the current code could not decode."""
    return (
        f"encoder_id = {_eid_sql(eid)} AND (embed_version IS NULL OR "
        f"(embed_version <> '{EMBED_VERSION}' AND embed_version <> '{FAILED_VERSION}'))"
    )


def count_stale(tables: Tables, eid: str) -> int:
    """Rows of encoder ``eid`` whose vector an older decode or model code made."""
    if not tables.exists("image_embeddings"):
        return 0
    if "embed_version" not in tables.open("image_embeddings").schema().to_arrow().names:
        return tables.count_equal("image_embeddings", "encoder_id", eid)  # all from before
    return tables.count("image_embeddings", _stale_sql(eid))


def _refresh_stale(
    tables: Tables,
    encoder: ClipEncoder,
    limit: int,
    batch_size: int,
    stats: EmbedStats,
    log: logging.Logger,
    progress: Progress | None = None,
) -> None:
    """Re-embed up to ``limit`` stale rows of the encoder (see the module)."""
    eid = encoder.encoder_id
    sql = (
        f"SELECT image_id, embed_version FROM image_embeddings WHERE {_stale_sql(eid)} "
        f"ORDER BY image_id LIMIT {int(limit)}"
    )
    rows = tables.query("image_embeddings", sql).read_all().to_pylist()
    if not rows:
        return
    legacy = [r["image_id"] for r in rows if r["embed_version"] is None]
    redo = [r["image_id"] for r in rows if r["embed_version"] is not None]
    current = []
    for batch in iter_image_batches(tables, legacy, batch_size):
        for i, data in zip(
            batch.column("image_id").to_pylist(), batch.column("bytes").to_pylist(), strict=True
        ):
            (redo if changed_by_decode_2(data) else current).append(i)
    stats.marked_current = _set_version(tables, eid, current, EMBED_VERSION)
    log.info(
        "embeddings for %s: %d stale rows looked at (limit %d): %d re-embedded, %d without a "
        "version marked current (decode 2 leaves their photo as it was)",
        eid,
        len(rows),
        limit,
        len(redo),
        len(current),
    )
    before = stats.embedded
    if redo and progress is not None:
        # Of the encoder's rows, those of the current code are done: the count climbs across
        # the bounded runs to the library's size.
        rows_now = tables.count_equal("image_embeddings", "encoder_id", eid)
        progress.start(eid, REEMBEDDING, rows_now - count_stale(tables, eid), rows_now)
    _embed(
        tables,
        encoder,
        len(redo),
        _rebatch(iter_image_batches(tables, sorted(redo), batch_size), batch_size),
        stats,
        log,
        batch_size,
        on_failed=lambda ids: _set_version(tables, eid, ids, FAILED_VERSION),
        progress=progress,
    )
    stats.reembedded = stats.embedded - before
    stats.embedded = before


def _set_version(tables: Tables, eid: str, ids: list[str], version: str) -> int:
    if not ids:
        return 0
    rows = pa.table(
        {
            "image_id": pa.array(ids, pa.string()),
            "encoder_id": pa.array([eid] * len(ids), pa.string()),
            "embed_version": pa.array([version] * len(ids), pa.string()),
        }
    )
    return tables.update_columns(
        "image_embeddings", rows, ["image_id", "encoder_id"], ["embed_version"]
    )


def _check_vectors(vectors: np.ndarray, ids: list[str], stats: EmbedStats) -> None:
    bad, worst = norm_errors(np.asarray(vectors))
    stats.max_norm_error = max(stats.max_norm_error, worst)
    for k in np.flatnonzero(bad):
        stats.bad_count += 1
        if len(stats.bad_vectors) < SHOWN:
            stats.bad_vectors.append(ids[k])


@dataclass
class VectorAudit:
    vectors: int = 0
    bad_count: int = 0
    bad_vectors: list[str] = field(default_factory=list)  # the first SHOWN
    max_norm_error: float = 0.0


def audit_vectors(
    tables: Tables, encoder_id: str, log: logging.Logger | None = None
) -> VectorAudit:
    """Every vector of ``encoder_id``: finite and of unit norm? Streamed batch by batch."""
    log = log or logging.getLogger(__name__)
    audit = VectorAudit()
    if not tables.exists("image_embeddings"):
        return audit
    sql = (
        "SELECT image_id, embedding FROM image_embeddings "
        f"WHERE encoder_id = {_eid_sql(encoder_id)}"
    )
    for batch in tables.query("image_embeddings", sql):
        ids = batch.column("image_id").to_pylist()
        column = batch.column("embedding")
        try:
            vectors = np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32)
        except ValueError:  # vectors of different lengths: judge each on its own
            vectors = None
        if vectors is not None:
            bad, worst = norm_errors(vectors)
        else:
            rows = [norm_errors(np.asarray([v], np.float32)) for v in column.to_pylist()]
            bad = np.array([b[0] for b, _ in rows])
            worst = max(w for _, w in rows)
        audit.max_norm_error = max(audit.max_norm_error, worst)
        for k in np.flatnonzero(bad):
            audit.bad_count += 1
            if len(audit.bad_vectors) < SHOWN:
                audit.bad_vectors.append(ids[k])
        audit.vectors += len(ids)
        log.info("audit: %d vectors of %s read, %d bad", audit.vectors, encoder_id, audit.bad_count)
    return audit
