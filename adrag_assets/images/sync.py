"""Bring the volume's ``raw/`` folder into the ``images`` Delta table, incrementally.

Only new or changed files (by size and mtime) are read; each is hashed and decoded once, at
reduced scale, by a pool of threads (Pillow releases the GIL while it decodes), which gives its
check, size, EXIF facts and the rendition the model reads (:func:`decode.decode`). The
original's bytes stay in the volume unless ``store_originals``.
Given a change set (the paths the upload sensor saw change), only those paths are stat'ed
and only the rows they and their images touch are read; without one, all of ``raw/`` is
scanned, with the same outcome.
A file that is not a usable photo (unreadable, too large, not a regular file, a symlink out
of the volume, corrupt, ...) goes to ``rejected_images`` with the reason and the run goes
on: whatever goes wrong with one file stays that file's row. Problems with labels (a bad
sidecar or labels.csv) are warnings, returned in :attr:`IngestStats.label_warnings`.

Writes happen in chunks, images before the file manifest, so a crash at any point leaves a
state the next run completes with nothing duplicated.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TypeVar

import pyarrow as pa
from deltalake import write_deltalake
from tqdm.auto import tqdm

from adrag_assets.images import decode as dec
from adrag_assets.tables import IMAGES, PHOTO_LABELS, REJECTED, VOLUME_FILES, Tables
from adrag_assets.volume import FileStat, FileTooLarge, Volume
from adrag_assets.volume import files as vol

CHUNK = 64  # files per Delta commit: bounds memory (bytes) and the cost of a crash
CHUNK_BYTES = 256 << 20  # ... and bytes per commit, so a run of large photos fits too
IN_CHUNK = 500  # keys per filtered query (an IN list): keeps each query's SQL small
# The most paths a change set holds; more, and a full scan is as cheap. The upload sensor
# puts the set in the run's config, which the run record (and the UI) keeps: 1,000 paths are
# about 60 KB there.
MAX_CHANGE_SET = 1000
_T = TypeVar("_T")


@dataclass
class IngestStats:
    files: int = 0  # photo files under raw/ (sidecars not counted); known ones on a change set
    files_read: int = 0  # files that were new or changed and so were read
    added: int = 0  # image rows inserted (new content)
    updated: int = 0  # image rows whose path or labels changed
    deleted: int = 0  # image rows removed (no file has that content any more)
    unchanged: int = 0
    rejected: int = 0  # rejected files in total, now
    newly_rejected: int = 0
    images: int = 0  # rows in the images table, now
    version: int = 0  # images table version after the run
    scope: str = "full"  # "full": the whole volume was scanned; "changes": a change set
    paths: int = 0  # paths in the change set (0 on a full scan)
    label_warnings: list[str] = field(default_factory=list)  # each names its sidecar or csv

    def as_dict(self) -> dict:
        return asdict(self)


def labels_json(labels: dict) -> str:
    return json.dumps(labels, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class IngestOptions:
    """How photos are read: the rendition's long side, whether ``images`` keeps originals'
    bytes, and how many threads decode (0: one per CPU)."""

    rendition_px: int = 512
    store_originals: bool = False
    decode_workers: int = 0

    @property
    def workers(self) -> int:
        return self.decode_workers or os.cpu_count() or 1


def read_photo(
    volume: Volume, st: FileStat, rendition_px: int = 512
) -> tuple[bytes, dec.Decoded] | None:
    """Read and decode one listed file; None when it vanished since the listing.

    Raises :class:`~adrag_assets.images.decode.RejectedImage` naming the file and why.
    """
    if st.problem:
        raise dec.RejectedImage(f"{st.path}: {st.problem}")
    try:
        data = volume.read_bytes(st.path, max_bytes=dec.MAX_PHOTO_BYTES)
    except FileNotFoundError:
        return None
    except FileTooLarge as e:
        raise dec.RejectedImage(
            f"{st.path}: file too large ({e.size:,} bytes; photos up to {e.limit:,})"
        ) from None
    except (OSError, ValueError) as e:
        raise dec.RejectedImage(
            f"{st.path}: cannot read ({getattr(e, 'strerror', None) or e})"
        ) from None
    return data, dec.decode(st.path, data, rendition_px)


def _ahead(
    pool: ThreadPoolExecutor,
    look: Callable[[FileStat], _T],
    files: list[FileStat],
    options: IngestOptions,
) -> Iterator[_T]:
    """``look(f)`` for each of ``files`` in order, the pool working ahead on at most
    :data:`CHUNK` files (and, when originals are kept, :data:`CHUNK_BYTES` of them): decoding
    goes on while a chunk is written, and memory holds at most a chunk of looks waiting."""
    window: deque[tuple[int, Future]] = deque()
    queued = 0  # bytes of originals waiting in the window
    rest = iter(files)
    while True:
        while len(window) < CHUNK and (not options.store_originals or queued < CHUNK_BYTES):
            st = next(rest, None)
            if st is None:
                break
            size = 0 if st.problem else st.size
            window.append((size, pool.submit(look, st)))
            queued += size
        if not window:
            return
        size, future = window.popleft()
        queued -= size
        yield future.result()


def _chunks(files: list[FileStat]) -> Iterator[list[FileStat]]:
    chunk: list[FileStat] = []
    size = 0
    for st in files:
        if chunk and (len(chunk) >= CHUNK or size + st.size > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(st)
        size += 0 if st.problem else st.size  # a problem file is never read
    if chunk:
        yield chunk


def _storable(text: str) -> str:
    """Text a Delta string column takes (no lone surrogates from undecodable names)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _quoted(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def rows_where_in(
    tables: Tables, name: str, columns: list[str], key: str, values: Iterable[str]
) -> list[dict]:
    """The rows of ``name`` whose ``key`` is one of ``values``, read by filtered queries (a
    bounded IN list each) instead of the whole table."""
    values = sorted(set(values))
    out: list[dict] = []
    for i in range(0, len(values), IN_CHUNK):
        where = f"{key} IN ({_quoted(values[i : i + IN_CHUNK])})"
        out += tables.read(name, columns, where).to_pylist()
    return out


def full_scan_needed(paths: Sequence[str]) -> str | None:
    """Why a change set cannot be synced on its own (so a full scan is), or None."""
    if len(paths) > MAX_CHANGE_SET:
        return f"{len(paths):,} changed paths, over the {MAX_CHANGE_SET:,} a change set holds"
    side = next((p for p in paths if vol.looks_like_sidecar(p)), None)
    if side is not None:  # it may label other photos, or be a photo's sidecar now
        return f"{side} may be a sidecar or labels.csv"
    return None


def sync_images(
    volume: Volume,
    tables: Tables,
    log: logging.Logger | None = None,
    on_rejected: Callable[[str], None] | None = None,
    paths: Sequence[str] | None = None,
    options: IngestOptions | None = None,
) -> IngestStats:
    """Sync ``raw/`` into the tables. ``paths`` is a change set (photo paths added, changed or
    deleted, as the upload sensor saw them): only those are looked at, and only the rows
    they touch are read. None (or a set :func:`full_scan_needed` refuses) scans everything:
    the reconciler, with the same outcome a change set would have had."""
    log = log or logging.getLogger(__name__)
    options = options or IngestOptions()
    if tables.exists("images") and tables.ensure_columns("images"):
        log.info("images: table upgraded in place (rendition, EXIF date, camera, GPS columns)")
    ensure_photo_labels(tables, log)
    if paths is not None:
        paths = sorted({volume.relative(p) for p in paths})
        why = full_scan_needed(paths) or _orphan_sidecars_beside(tables, paths)
        if why is None:
            return _sync_changes(volume, tables, paths, log, on_rejected, options)
        log.info("images: full scan instead of the change set: %s", why)
    return _sync_all(volume, tables, log, on_rejected, options)


def _sync_all(
    volume: Volume,
    tables: Tables,
    log: logging.Logger,
    on_rejected: Callable[[str], None] | None,
    options: IngestOptions,
) -> IngestStats:
    photos, sidecars = vol.scan(volume)
    stats = IngestStats(files=len(photos), scope="full")
    on_disk = {p.path for p in photos}
    manifest = {
        r["path"]: (r["size"], r["mtime_ns"], r["image_id"])
        for r in tables.read("volume_files", VOLUME_FILES.names).to_pylist()
    }
    rejected = {
        r["path"]: (r["size"], r["mtime_ns"])
        for r in tables.read("rejected_images", ["path", "size", "mtime_ns"]).to_pylist()
    }
    before = _rows_now(tables)
    known_ids = set(before)

    to_read = [st for st in photos if _needs_look(st, manifest.get(st.path), rejected.get(st.path))]
    log.info(
        "volume: %d photo files, %d sidecars; %d new or changed to read",
        len(photos),
        len(sidecars),
        len(to_read),
    )
    # Labels of every photo up front (text files only), for the rows about to be written;
    # the final pass below recomputes them for each image's chosen path and fixes the rare
    # row whose path a same-content file took over.
    upfront, _ = vol.read_labels(volume, [st.path for st in to_read], sidecars, complete=False)
    read = _read_files(
        volume,
        tables,
        to_read,
        rejected,
        known_ids.intersection,
        stats,
        log,
        lambda path: labels_json(upfront.get(path, {})),
        options,
    )
    for path, image_id in read.accepted.items():
        manifest[path] = (0, 0, image_id)
    for path in read.rejected:
        manifest.pop(path, None)
    if on_rejected:
        for reason in read.reasons:
            on_rejected(reason)

    # Files gone from the volume leave the manifest and the rejected list.
    gone = [p for p in manifest if p not in on_disk]
    tables.delete_keys("volume_files", "path", gone)
    tables.delete_keys("rejected_images", "path", [p for p in rejected if p not in on_disk])
    for p in gone:
        manifest.pop(p)

    # Every path of an image (exact copies in several folders) gives it labels; see _merged.
    paths_of: dict[str, list[str]] = {}
    for path in sorted(manifest):
        paths_of.setdefault(manifest[path][2], []).append(path)
    del manifest
    ids = known_ids | set(read.accepted.values())
    stats.deleted = _delete_images(tables, ids - set(paths_of))
    every = sorted(p for ps in paths_of.values() for p in ps)
    labels, stats.label_warnings = vol.read_labels(volume, every, sidecars)
    want = {
        i: _merged(ps, labels, _current(i, before, read.written), stats.label_warnings)
        for i, ps in paths_of.items()
    }
    _write_paths_and_labels(tables, want, before, read.written, stats, log)
    return stats


def _sync_changes(
    volume: Volume,
    tables: Tables,
    paths: list[str],
    log: logging.Logger,
    on_rejected: Callable[[str], None] | None,
    options: IngestOptions,
) -> IngestStats:
    stats = IngestStats(scope="changes", paths=len(paths))
    now = {p: vol.stat_listed(volume, p) for p in paths}
    manifest = {
        r["path"]: (r["size"], r["mtime_ns"], r["image_id"])
        for r in rows_where_in(tables, "volume_files", VOLUME_FILES.names, "path", paths)
    }
    rejected = {
        r["path"]: (r["size"], r["mtime_ns"])
        for r in rows_where_in(
            tables, "rejected_images", ["path", "size", "mtime_ns"], "path", paths
        )
    }
    present = [st for st in now.values() if st is not None]
    to_read = [
        st for st in present if _needs_look(st, manifest.get(st.path), rejected.get(st.path))
    ]
    log.info(
        "change set: %d path(s), %d on the volume; %d new or changed to read",
        len(paths),
        len(present),
        len(to_read),
    )

    def in_table(ids: set[str]) -> set[str]:
        rows = rows_where_in(tables, "images", ["image_id"], "image_id", ids)
        return {r["image_id"] for r in rows}

    # The labels the new rows are written with: those of their own paths (see _sync_all).
    upfront, _ = _labels_of_changes(
        volume, tables, {st.path: [st.path] for st in to_read}, {st.path: None for st in to_read}
    )
    read = _read_files(
        volume,
        tables,
        to_read,
        rejected,
        in_table,
        stats,
        log,
        lambda path: upfront[path][1] if path in upfront else "{}",
        options,
    )
    if on_rejected:
        for reason in read.reasons:
            on_rejected(reason)
    gone = [p for p, st in now.items() if st is None]
    tables.delete_keys("volume_files", "path", [p for p in gone if p in manifest])
    tables.delete_keys("rejected_images", "path", [p for p in gone if p in rejected])

    # The images these paths had or have now, with every path of each (see _merged).
    affected = {m[2] for m in manifest.values()} | set(read.accepted.values())
    paths_of: dict[str, list[str]] = {}
    for r in rows_where_in(tables, "volume_files", ["path", "image_id"], "image_id", affected):
        paths_of.setdefault(r["image_id"], []).append(r["path"])
    stats.deleted = _delete_images(tables, affected - set(paths_of))
    # A photo come or gone can move a shared-stem sidecar or a csv row to another image.
    others = _label_neighbours(volume, tables, paths) - affected
    for r in rows_where_in(tables, "volume_files", ["path", "image_id"], "image_id", others):
        paths_of.setdefault(r["image_id"], []).append(r["path"])
    before = _rows_now(tables, affected | others)
    current = {i: _current(i, before, read.written) for i in paths_of}
    want, stats.label_warnings = _labels_of_changes(volume, tables, paths_of, current)
    _write_paths_and_labels(tables, want, before, read.written, stats, log)
    stats.files = tables.count("volume_files") + tables.count("rejected_images")
    return stats


def _labels_of_changes(
    volume: Volume,
    tables: Tables,
    paths_of: dict[str, list[str]],
    current: dict[str, str | None],
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """{image_id: (path, labels JSON)} for a change set's images (``paths_of``: every path of
    each; ``current``: the path its row has), read from only the sidecars and labels.csv
    files that can label their paths (no sidecar changed: a change of one makes a full scan),
    with the same outcome :func:`vol.read_labels` has over everything (but for csv rows that
    name no photo, which only a full scan can tell)."""
    chosen = {p for ps in paths_of.values() for p in ps}
    names: set[str] = set()
    for p in chosen:
        sides, csvs = vol.label_sources(p)
        names.update(sides, csvs)
    found = [st for st in (vol.stat_listed(volume, q) for q in sorted(names)) if st is not None]
    # Other images' paths decide who a shared-stem sidecar or a csv row by bare file name
    # belongs to (the first path by name; an exact path over a same-named deeper photo).
    conditions: set[str] = set()
    for st in found:
        folder = str(PurePosixPath(st.path).parent)
        if st.path.endswith("/" + vol.LABELS_CSV):
            conditions.update(  # lower(): a row may name a photo in another case
                f"lower(path) = lower({_quoted([f'{folder}/{PurePosixPath(p).name}'])})"
                for p in chosen
                if p.startswith(folder + "/")
            )
        else:
            conditions.add(_stem_condition(folder, PurePosixPath(st.path).stem))
    others = {r["path"] for r in _images_where(tables, conditions) if r["image_id"] not in paths_of}
    labels, warnings = vol.read_labels(volume, sorted(chosen | others), found, complete=False)
    warnings = [w for w in warnings if not any(w.startswith(o + ":") for o in others)]
    return {i: _merged(ps, labels, current[i], warnings) for i, ps in paths_of.items()}, warnings


def _current(
    image_id: str, before: dict[str, tuple[str, bytes]], written: dict[str, tuple[str, bytes]]
) -> str | None:
    """The path an image's row has now (None: no row)."""
    row = before.get(image_id) or written.get(image_id)
    return row[0] if row else None


def _merged(
    paths: list[str], labels: dict[str, dict[str, str]], current: str | None, warnings: list[str]
) -> tuple[str, str]:
    """(path, labels JSON) of one image from all its paths (exact copies of one photo).

    Identity is content, so the image keeps one row, one vector and one path: the one it has
    while that file is there (a copy added elsewhere does not take it over), else the first
    by name. Its labels are those of every path, the shown path's first, then the others' by
    name for keys it lacks; a copy's label that differs from one already taken is a warning.
    """
    paths = sorted(paths)
    shown = current if current in paths else paths[0]
    merged = dict(labels[shown])
    for p in paths:
        if p == shown:
            continue
        differ = sorted(k for k, v in labels[p].items() if merged.setdefault(k, v) != v)
        if differ:
            warnings.append(
                f"{p}: the same photo as {shown} (one image, several paths); its label(s) "
                f"{', '.join(repr(k) for k in differ[:3])} differ from that path's, whose win"
            )
    if len(paths) > 1:  # the union may be over the size the index takes
        merged = vol.fit_labels(shown, merged, warnings.append)
    return shown, labels_json(merged)


def _orphan_sidecars_beside(tables: Tables, paths: list[str]) -> str | None:
    """Why a change set needs a full scan because a rejected file beside one of its photos
    may be that photo's sidecar in another case or Unicode form (``Rex.jpg.txt`` uploaded
    before ``Rex.JPG``: a sidecar of nothing, so rejected until then), or None."""
    conditions = set()
    for p in paths:
        folder = str(PurePosixPath(p).parent) + "/"
        conditions.add(
            f"starts_with(path, {_quoted([folder])}) "
            f"AND strpos(substr(path, {len(folder) + 1}), '/') = 0 "
            "AND (ends_with(lower(path), '.txt') OR ends_with(lower(path), '.json'))"
        )
    ordered = sorted(conditions)
    for i in range(0, len(ordered), IN_CHUNK // 4):
        where = " OR ".join(f"({c})" for c in ordered[i : i + IN_CHUNK // 4])
        rows = tables.read("rejected_images", ["path"], where).to_pylist()
        if rows:
            return f"{rows[0]['path']} may be a sidecar of a photo in the change set"
    return None


def _images_where(tables: Tables, conditions: set[str]) -> list[dict]:
    """(image_id, path) of the photo files whose path meets any of ``conditions`` (SQL): every
    path of an image, copies too, since each may own a sidecar or a csv row."""
    ordered, out = sorted(conditions), []
    for i in range(0, len(ordered), IN_CHUNK // 4):
        where = " OR ".join(f"({c})" for c in ordered[i : i + IN_CHUNK // 4])
        out += tables.read("volume_files", ["image_id", "path"], where).to_pylist()
    return out


def _stem_condition(folder: str, stem: str) -> str:
    base = f"{folder}/{stem}"
    return f"path = {_quoted([base])} OR starts_with(path, {_quoted([base + '.'])})"


def _label_neighbours(volume: Volume, tables: Tables, paths: list[str]) -> set[str]:
    """Image ids whose labels may change because ``paths`` came or went: those sharing a
    folder and stem with one of them when a stem sidecar is there (it labels the first such
    path by name), and those deeper under a labels.csv's folder with a path's file name
    (a csv row by bare file name labels the exact path first)."""
    conditions: set[str] = set()
    for p in paths:
        pp = PurePosixPath(p)
        folder = str(pp.parent)
        stems = [f"{folder}/{pp.stem}{x}" for x in (".json", ".txt", ".JSON", ".TXT")]
        if any(vol.stat_listed(volume, q) for q in stems):
            conditions.add(_stem_condition(folder, pp.stem))
        if vol.stat_listed(volume, f"{folder}/{vol.LABELS_CSV}"):
            conditions.add(
                f"starts_with(path, {_quoted([folder + '/'])}) AND "
                f"ends_with(path, {_quoted(['/' + pp.name])})"
            )
    return {r["image_id"] for r in _images_where(tables, conditions)} if conditions else set()


def ensure_photo_labels(tables: Tables, log: logging.Logger) -> bool:
    """Make ``photo_labels`` from the ``labels`` column of an ``images`` table written before
    it existed (one commit; only that column is read, no photo bytes, and ``images`` is left
    as it is). True when that happened."""
    if tables.exists("photo_labels") or not tables.exists("images"):
        return False
    old = tables.read("images", ["image_id", "labels"], "labels IS NOT NULL")
    tables.open("photo_labels")
    if old.num_rows:
        write_deltalake(
            tables.uri("photo_labels"),
            old.cast(PHOTO_LABELS),
            mode="append",
            storage_options=tables.storage_options,
        )
    log.info("photo_labels: made from the labels of %d image rows (images not rewritten)", len(old))
    return True


def _rows_now(tables: Tables, ids: set[str] | None = None) -> dict[str, tuple[str, bytes | None]]:
    """(path, digest of labels; None: no labels row) per image (all, or ``ids``): the
    labels themselves may be kilobytes each."""
    if ids is None:
        paths = tables.read("images", ["image_id", "path"]).to_pylist()
        labels = tables.read("photo_labels", ["image_id", "labels"]).to_pylist()
    else:
        paths = rows_where_in(tables, "images", ["image_id", "path"], "image_id", ids)
        labels = rows_where_in(tables, "photo_labels", ["image_id", "labels"], "image_id", ids)
    digests = {r["image_id"]: _digest(r["labels"]) for r in labels}
    return {r["image_id"]: (r["path"], digests.get(r["image_id"])) for r in paths}


def _delete_images(tables: Tables, ids: set[str]) -> int:
    """Delete images' rows, their labels first: a crash between leaves an image without
    labels, which the next run gives them, never labels of no image."""
    tables.delete_keys("photo_labels", "image_id", ids)
    return tables.delete_keys("images", "image_id", ids)


def _digest(labels: str) -> bytes:
    return hashlib.blake2b(labels.encode(), digest_size=16).digest()


def _needs_look(st: FileStat, accepted: tuple | None, rejected: tuple | None) -> bool:
    """Whether a listed file must be read: new, changed since it was accepted or rejected
    (by size and mtime), or a problem entry that was accepted before."""
    same = (st.size, st.mtime_ns)
    if st.problem:  # never read; rejected again only if it changed or was accepted before
        return accepted is not None or rejected != same
    return (accepted is None or accepted[:2] != same) and rejected != same


@dataclass
class _Read:
    accepted: dict[str, str] = field(default_factory=dict)  # path -> image_id
    rejected: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    # image_id -> (path, labels digest) of the rows this run inserted
    written: dict[str, tuple[str, bytes]] = field(default_factory=dict)


def _read_files(
    volume: Volume,
    tables: Tables,
    to_read: list[FileStat],
    rejected_before: dict,
    in_table: Callable[[set[str]], set[str]],
    stats: IngestStats,
    log: logging.Logger,
    labels_of: Callable[[str], str],
    options: IngestOptions,
) -> _Read:
    """Read, hash and decode ``to_read`` in bounded chunks, writing each chunk's image rows,
    then its manifest and rejected rows. ``in_table`` says which image ids the table has;
    ``labels_of`` gives a path's labels (JSON), so a new row is written with them rather
    than patched afterwards by a merge, which reads every photo of the table."""
    out = _Read()
    stats.files_read = len(to_read)
    now = datetime.now(UTC)
    inserted: set[str] = set()
    bar = tqdm(total=len(to_read), desc="images", unit="file", disable=None)
    done = 0

    def look(st: FileStat) -> tuple[tuple[bytes | None, dec.Decoded] | None, str | None]:
        """(bytes kept or None, decoded) or None if vanished; or the reason it is rejected."""
        try:
            got = read_photo(volume, st, options.rendition_px)
        except dec.RejectedImage as e:
            return None, str(e)
        except Exception as e:  # one bad file never stops the others
            return None, f"{st.path}: cannot ingest ({type(e).__name__}: {e})"
        if got is None:
            return None, None
        # Dropped here, in the worker: only renditions wait for the commit.
        return ((got[0] if options.store_originals else None), got[1]), None

    with ThreadPoolExecutor(options.workers, thread_name_prefix="adrag-decode") as pool:
        looked = _ahead(pool, look, to_read, options)
        for chunk in _chunks(to_read):
            decoded, file_rows, reject_rows = [], [], []
            # A chunk at a time (bounded by CHUNK files and CHUNK_BYTES), in the listing's
            # order; the pool decodes on into the next chunk while this one is written.
            for st, (got, reason) in zip(chunk, itertools.islice(looked, len(chunk)), strict=True):
                if reason is not None:
                    reason = _storable(reason)
                    reject_rows.append(
                        {
                            "path": st.path,
                            "size": st.size,
                            "mtime_ns": st.mtime_ns,
                            "reason": reason,
                            "rejected_at": now,
                        }
                    )
                    out.reasons.append(reason)
                    log.warning("rejected %s", reason)
                    continue
                if got is not None:  # None: vanished since the listing; the next run sees it gone
                    decoded.append((st, *got))
            have = in_table({d.image_id for _, _, d in decoded} - inserted)
            image_rows, label_rows = [], []
            for st, data, d in decoded:
                out.accepted[st.path] = d.image_id
                file_rows.append(
                    {
                        "path": st.path,
                        "size": st.size,
                        "mtime_ns": st.mtime_ns,
                        "image_id": d.image_id,
                    }
                )
                if d.image_id in inserted or d.image_id in have:
                    continue
                inserted.add(d.image_id)
                labels = labels_of(st.path)
                out.written[d.image_id] = (st.path, _digest(labels))
                label_rows.append({"image_id": d.image_id, "labels": labels})
                image_rows.append(
                    {
                        "image_id": d.image_id,
                        "path": st.path,
                        "format": d.format,
                        "width": d.width,
                        "height": d.height,
                        "size": st.size,
                        "mtime": datetime.fromtimestamp(st.mtime_ns / 1e9, UTC),
                        "labels": None,  # in photo_labels (tables.py)
                        "bytes": data,
                        "ingested_at": now,
                        "rendition": d.rendition,
                        "taken_at": d.taken_at,
                        "camera_make": d.camera_make,
                        "camera_model": d.camera_model,
                        "has_gps": d.has_gps,
                    }
                )
            del decoded
            # Images first: a crash before the manifest is written only means a re-read (which
            # finds the row). An append, not a merge: a merge reads the whole table, photos and
            # all, to look for the keys; ``in_table`` has told which are new.
            if image_rows:
                tables.open("images")  # created on first use
                write_deltalake(
                    tables.uri("images"),
                    pa.Table.from_pylist(image_rows, IMAGES),
                    mode="append",
                    storage_options=tables.storage_options,
                )
                # Then their labels, appended too (new ids: ``in_table`` said so). A crash
                # between leaves rows without labels, which the run after gives them.
                tables.open("photo_labels")
                write_deltalake(
                    tables.uri("photo_labels"),
                    pa.Table.from_pylist(label_rows, PHOTO_LABELS),
                    mode="append",
                    storage_options=tables.storage_options,
                )
            stats.added += len(image_rows)
            del image_rows
            tables.upsert("volume_files", pa.Table.from_pylist(file_rows, VOLUME_FILES), ["path"])
            tables.upsert("rejected_images", pa.Table.from_pylist(reject_rows, REJECTED), ["path"])
            tables.delete_keys("volume_files", "path", [r["path"] for r in reject_rows])
            tables.delete_keys(
                "rejected_images",
                "path",
                [r["path"] for r in file_rows if r["path"] in rejected_before],
            )
            out.rejected += [r["path"] for r in reject_rows]
            stats.newly_rejected += len(reject_rows)
            bar.update(len(chunk))
            done += len(chunk)
            log.info(
                "images: read %d/%d files, %d new images, %d rejected so far",
                done,
                len(to_read),
                stats.added,
                stats.newly_rejected,
            )
    bar.close()
    return out


def _write_paths_and_labels(
    tables: Tables,
    want: dict[str, tuple[str, str]],
    before: dict[str, tuple[str, bytes]],
    written: dict[str, tuple[str, bytes]],
    stats: IngestStats,
    log: logging.Logger,
) -> None:
    """Set each image's path (in ``images``) and labels (in ``photo_labels``) where they
    differ from the tables' (``before``, and ``written`` for the rows this run inserted)."""
    for w in stats.label_warnings:
        log.warning("labels: %s", w)
    now = {i: before.get(i) or written.get(i) for i in want}
    # Only rows whose path differs are sent to a merge of images: a merge rewrites the files
    # it touches, renditions and all, so neither an upload nor a relabel should need one.
    moved = {i: v[0] for i, v in want.items() if now[i] is None or now[i][0] != v[0]}
    relabelled = {i: v[1] for i, v in want.items() if now[i] is None or now[i][1] != _digest(v[1])}
    tables.update_columns(
        "images",
        pa.table({"image_id": list(moved), "path": list(moved.values())}),
        ["image_id"],
        ["path"],
    )
    if relabelled:
        tables.upsert(
            "photo_labels",
            pa.table({"image_id": list(relabelled), "labels": list(relabelled.values())}),
            ["image_id"],
            update_when="t.labels IS DISTINCT FROM s.labels",
        )
    kept = [i for i in want if i in before]
    stats.updated = sum(i in moved or i in relabelled for i in kept)
    stats.unchanged = len(kept) - stats.updated
    stats.images = tables.count("images")
    stats.rejected = tables.count("rejected_images")
    stats.version = tables.version("images")
