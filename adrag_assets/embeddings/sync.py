"""Keep ``image_embeddings`` in step with ``images`` for the configured encoder.

Only images without a vector for this encoder are embedded; a moved or relabelled image
gets its path and labels updated in place, and rows of deleted images are removed. Photos
stream from Delta in batches (never all bytes in memory): while the model encodes one batch,
a worker thread decodes and preprocesses the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from adrag_assets.tables import EMBEDDINGS, Tables

if TYPE_CHECKING:
    import torch

    from adrag_assets.embeddings.encoder import ClipEncoder

WRITE_EVERY = 256  # rows per Delta commit while embedding


@dataclass
class EmbedStats:
    encoder_id: str = ""
    embedded: int = 0  # new vectors computed
    updated: int = 0  # path or labels changed, vector kept
    deleted: int = 0  # rows of images that no longer exist (any encoder)
    unchanged: int = 0
    failed: int = 0  # images that could not be decoded for the model
    rows: int = 0  # rows for this encoder, now
    version: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 2)}


def _quoted(ids: list[str]) -> str:
    return ", ".join(f"'{i}'" for i in ids)  # ids are hex digests: nothing to escape


def iter_image_batches(tables: Tables, ids: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Stream (image_id, path, labels, bytes) for ``ids`` from Delta, ``batch_size`` at a time."""
    for start in range(0, len(ids), batch_size):
        part = ids[start : start + batch_size]
        sql = (
            f"SELECT image_id, path, labels, bytes FROM images WHERE image_id IN ({_quoted(part)})"
        )
        table = tables.query("images", sql).read_all()
        yield from table.to_batches()


def prepare(
    encoder: ClipEncoder, batch: pa.RecordBatch
) -> tuple[list[dict], torch.Tensor | None, list[str]]:
    """Decode and preprocess one batch: (rows kept, pixel tensor, failure messages)."""
    # Imported here: the Dagster code location imports this module, and torch costs seconds.
    import torch

    from adrag_assets.embeddings.encoder import decode_for_model

    kept, pixels, failures = [], [], []
    for row in batch.to_pylist():
        try:
            image = decode_for_model(row.pop("bytes"), encoder.image_size)
            pixels.append(encoder.pixels(image))
            kept.append(row)
        except Exception as e:  # one bad photo never stops the batch
            failures.append(f"{row['path']}: cannot decode for the model ({e})")
    return kept, (torch.stack(pixels) if pixels else None), failures


def sync_embeddings(
    tables: Tables, encoder: ClipEncoder, batch_size: int = 32, log: logging.Logger | None = None
) -> EmbedStats:
    log = log or logging.getLogger(__name__)
    eid = encoder.encoder_id
    stats = EmbedStats(encoder_id=eid)
    images = tables.read("images", ["image_id", "path", "labels"])
    current = {r["image_id"]: r for r in images.to_pylist()}
    existing = tables.read("image_embeddings", ["image_id", "encoder_id", "path", "labels"])

    stale = set(existing.column("image_id").to_pylist()) - set(current)
    stats.deleted = tables.delete_keys("image_embeddings", "image_id", stale)
    mine = {
        r["image_id"]: r
        for r in existing.to_pylist()
        if r["encoder_id"] == eid and r["image_id"] in current
    }
    moved = [
        {
            "image_id": i,
            "encoder_id": eid,
            "path": current[i]["path"],
            "labels": current[i]["labels"],
        }
        for i, r in mine.items()
        if (r["path"], r["labels"]) != (current[i]["path"], current[i]["labels"])
    ]
    if moved:
        stats.updated = tables.update_columns(
            "image_embeddings",
            pa.Table.from_pylist(moved),
            ["image_id", "encoder_id"],
            ["path", "labels"],
        )
    todo = sorted(set(current) - set(mine))
    stats.unchanged = len(mine) - stats.updated
    log.info(
        "embeddings for %s: %d to embed, %d path/label updates, %d deleted, %d unchanged",
        eid,
        len(todo),
        stats.updated,
        stats.deleted,
        stats.unchanged,
    )

    started = time.perf_counter()
    pending: list[dict] = []

    def flush() -> None:
        if pending:
            tables.upsert(
                "image_embeddings",
                pa.Table.from_pylist(pending, EMBEDDINGS),
                ["image_id", "encoder_id"],
            )
            pending.clear()

    bar = tqdm(total=len(todo), desc="embeddings", unit="img", disable=None)
    batches = iter_image_batches(tables, todo, batch_size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adrag-decode") as pool:
        future = pool.submit(_next_prepared, encoder, batches)
        while (prepared := future.result()) is not None:
            future = pool.submit(_next_prepared, encoder, batches)  # decode ahead
            rows, pixels, failures = prepared
            for msg in failures:
                log.warning(msg)
            stats.failed += len(failures)
            if pixels is not None:
                vectors = encoder.encode_pixels(pixels)
                now = datetime.now(UTC)
                for row, vec in zip(rows, vectors, strict=True):
                    pending.append({**row, "encoder_id": eid, "embedding": vec, "embedded_at": now})
                stats.embedded += len(rows)
            bar.update(len(rows) + len(failures))
            if len(pending) >= WRITE_EVERY:
                flush()
                log.info("embedded %d/%d images", stats.embedded, len(todo))
        flush()
    bar.close()
    stats.seconds = time.perf_counter() - started
    stats.rows = tables.count("image_embeddings", f"encoder_id = '{eid}'")
    stats.version = tables.version("image_embeddings")
    log.info(
        "embedded %d images in %.1fs (%.1f img/s)",
        stats.embedded,
        stats.seconds,
        stats.images_per_s,
    )
    return stats


def _next_prepared(encoder: ClipEncoder, batches: Iterator[pa.RecordBatch]):
    batch = next(batches, None)
    return None if batch is None else prepare(encoder, batch)


def embedding_matrix(tables: Tables, encoder_id: str) -> tuple[list[str], np.ndarray]:
    """All (image_id, vector) rows for one encoder, as ids and an (N, dim) float32 matrix."""
    t = tables.read("image_embeddings", ["image_id", "embedding"], f"encoder_id = '{encoder_id}'")
    if t.num_rows == 0:
        return [], np.zeros((0, 0), np.float32)
    return t.column("image_id").to_pylist(), np.stack(
        t.column("embedding").to_numpy(zero_copy_only=False)
    ).astype(np.float32)
