"""Bring the volume's ``raw/`` folder into the ``images`` Delta table, incrementally.

Only new or changed files (by size and mtime) are read; each is hashed and fully decoded.
A file that is not a usable photo (unreadable, too large, not a regular file, a symlink out
of the volume, corrupt, ...) goes to ``rejected_images`` with the reason and the run goes
on: whatever goes wrong with one file stays that file's row. Problems with labels (a bad
sidecar or labels.csv) are warnings, returned in :attr:`IngestStats.label_warnings`.

Writes happen in chunks, images before the file manifest, so a crash at any point leaves a
state the next run completes with nothing duplicated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from tqdm.auto import tqdm

from adrag_assets.images import decode as dec
from adrag_assets.tables import IMAGES, REJECTED, VOLUME_FILES, Tables
from adrag_assets.volume import FileStat, FileTooLarge, Volume
from adrag_assets.volume import files as vol

CHUNK = 64  # files per Delta commit: bounds memory (bytes) and the cost of a crash
CHUNK_BYTES = 256 << 20  # ... and bytes per commit, so a run of large photos fits too


@dataclass
class IngestStats:
    files: int = 0  # photo files under raw/ (sidecars not counted)
    files_read: int = 0  # files that were new or changed and so were read
    added: int = 0  # image rows inserted (new content)
    updated: int = 0  # image rows whose path or labels changed
    deleted: int = 0  # image rows removed (no file has that content any more)
    unchanged: int = 0
    rejected: int = 0  # rejected files in total, now
    newly_rejected: int = 0
    images: int = 0  # rows in the images table, now
    version: int = 0  # images table version after the run
    label_warnings: list[str] = field(default_factory=list)  # each names its sidecar or csv

    def as_dict(self) -> dict:
        return asdict(self)


def labels_json(labels: dict) -> str:
    return json.dumps(labels, sort_keys=True, ensure_ascii=False)


def read_photo(volume: Volume, st: FileStat) -> tuple[bytes, dec.Decoded] | None:
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
    return data, dec.decode(st.path, data)


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


def sync_images(
    volume: Volume,
    tables: Tables,
    log: logging.Logger | None = None,
    on_rejected: Callable[[str], None] | None = None,
) -> IngestStats:
    log = log or logging.getLogger(__name__)
    photos, sidecars = vol.scan(volume)
    stats = IngestStats(files=len(photos))
    on_disk = {p.path: p for p in photos}

    manifest = {r["path"]: r for r in tables.read("volume_files", VOLUME_FILES.names).to_pylist()}
    rejected = {r["path"]: r for r in tables.read("rejected_images", REJECTED.names).to_pylist()}
    before = {
        r["image_id"]: (r["path"], r["labels"])
        for r in tables.read("images", ["image_id", "path", "labels"]).to_pylist()
    }
    known_ids = set(before)

    def unchanged(st: FileStat, rec: dict | None) -> bool:
        return rec is not None and (rec["size"], rec["mtime_ns"]) == (st.size, st.mtime_ns)

    def needs_look(st: FileStat) -> bool:
        if st.problem:  # never read; rejected again only if it changed or was accepted before
            return st.path in manifest or not unchanged(st, rejected.get(st.path))
        return not unchanged(st, manifest.get(st.path)) and not unchanged(st, rejected.get(st.path))

    to_read = [st for st in photos if needs_look(st)]
    stats.files_read = len(to_read)
    log.info(
        "volume: %d photo files, %d sidecars; %d new or changed to read",
        len(photos),
        len(sidecars),
        len(to_read),
    )

    now = datetime.now(UTC)
    bar = tqdm(total=len(to_read), desc="images", unit="file", disable=None)
    done = 0
    for chunk in _chunks(to_read):
        image_rows, file_rows, reject_rows, accepted = [], [], [], []
        for st in chunk:
            path = st.path
            try:
                got = read_photo(volume, st)
            except dec.RejectedImage as e:
                reason = str(e)
            except Exception as e:  # one bad file never stops the others
                reason = f"{path}: cannot ingest ({type(e).__name__}: {e})"
            else:
                reason = None
            if reason is not None:
                reason = _storable(reason)
                reject_rows.append(
                    {
                        "path": path,
                        "size": st.size,
                        "mtime_ns": st.mtime_ns,
                        "reason": reason,
                        "rejected_at": now,
                    }
                )
                if on_rejected:
                    on_rejected(reason)
                log.warning("rejected %s", reason)
                continue
            if got is None:  # vanished since the scan: the next run sees the deletion
                continue
            data, d = got
            accepted.append(path)
            file_rows.append(
                {"path": path, "size": st.size, "mtime_ns": st.mtime_ns, "image_id": d.image_id}
            )
            if d.image_id not in known_ids:
                known_ids.add(d.image_id)
                image_rows.append(
                    {
                        "image_id": d.image_id,
                        "path": path,
                        "format": d.format,
                        "width": d.width,
                        "height": d.height,
                        "size": st.size,
                        "mtime": datetime.fromtimestamp(st.mtime_ns / 1e9, UTC),
                        "labels": "{}",  # set below, for every image, from the sidecars
                        "bytes": data,
                        "ingested_at": now,
                    }
                )
        # Images first: a crash before the manifest is written only means a re-read.
        res = tables.upsert(
            "images", pa.Table.from_pylist(image_rows, IMAGES), ["image_id"], "false"
        )
        stats.added += int(res.get("num_target_rows_inserted", 0))
        tables.upsert("volume_files", pa.Table.from_pylist(file_rows, VOLUME_FILES), ["path"])
        tables.upsert("rejected_images", pa.Table.from_pylist(reject_rows, REJECTED), ["path"])
        tables.delete_keys("volume_files", "path", [r["path"] for r in reject_rows])
        tables.delete_keys("rejected_images", "path", [p for p in accepted if p in rejected])
        stats.newly_rejected += len(reject_rows)
        for r in file_rows:
            manifest[r["path"]] = r
        for r in reject_rows:
            manifest.pop(r["path"], None)
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

    # Files gone from the volume leave the manifest and the rejected list.
    gone = [p for p in manifest if p not in on_disk]
    tables.delete_keys("volume_files", "path", gone)
    tables.delete_keys("rejected_images", "path", [p for p in rejected if p not in on_disk])
    for p in gone:
        manifest.pop(p)

    # Every image keeps the first path (by name) that has its content, and that path's labels.
    paths_by_id: dict[str, str] = {}
    for path in sorted(manifest):
        paths_by_id.setdefault(manifest[path]["image_id"], path)
    stats.deleted = tables.delete_keys("images", "image_id", known_ids - set(paths_by_id))
    labels, stats.label_warnings = vol.read_labels(volume, sorted(paths_by_id.values()), sidecars)
    for w in stats.label_warnings:
        log.warning("labels: %s", w)
    want = {i: (p, labels_json(labels[p])) for i, p in paths_by_id.items()}
    # Only rows whose path or labels differ are sent to the merge (new rows got "{}" labels
    # when inserted), so an upload into a large table rewrites little.
    changed = {i: v for i, v in want.items() if before.get(i) != v}
    tables.update_columns(
        "images",
        pa.table(
            {
                "image_id": list(changed),
                "path": [v[0] for v in changed.values()],
                "labels": [v[1] for v in changed.values()],
            }
        ),
        ["image_id"],
        ["path", "labels"],
    )
    kept = [i for i in want if i in before]
    stats.updated = sum(before[i] != want[i] for i in kept)
    stats.unchanged = len(kept) - stats.updated
    stats.images = tables.count("images")
    stats.rejected = tables.count("rejected_images")
    stats.version = tables.version("images")
    return stats
