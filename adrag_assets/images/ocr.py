"""Text in photos: the words OCR reads in each photo's rendition, kept in ``photo_text``.

The reader is RapidOCR (PP-OCRv4 detection and recognition) on ONNX Runtime, CPU: its models
ship inside the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded. It reads the
rendition (long side ``ADRAG_RENDITION_PX``), never the original: detection runs at that size
(RapidOCR's default would upscale a 512 px picture to 736 px first, for nothing on a label
big enough to matter) and the text-angle classifier is off (text on product shots is upright
or the photo is; it costs a third of the time). About 0.3 s a photo on 2 cores (``make bench``).

Work follows the table, as the embeddings do: a run reads only the photos of ``images`` that
have no row of the current :data:`OCR_VERSION`, and deletes the rows of photos ``images`` no
longer has. Rows are committed every :data:`WRITE_EVERY` photos, so a run that dies keeps
what it read. The index adds the words to each photo's BM25 text (``index/sync.py``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from adrag_assets.tables import PHOTO_TEXT, Tables

if TYPE_CHECKING:
    from rapidocr_onnxruntime import RapidOCR

# Bump when what is read changes (model, settings, filtering): every photo is read again.
OCR_VERSION = "rapidocr-1.4-ppocrv4.det512.nocls.1"
MIN_SCORE = 0.8  # lines read with less confidence are mostly noise (fur, grass, bokeh)
MIN_CHARS = 3  # "aii" on a cat's ear is not a word anyone searches for
WRITE_EVERY = 64
LOOKUP = 2000  # ids per read of the renditions
_WORD = re.compile(r"[^\W_]{2,}")

_engine: RapidOCR | None = None
_engine_lock = threading.Lock()


@dataclass
class OcrStats:
    mode: str = "off"  # "off", "read" or "noop"
    read: int = 0  # photos read this run
    with_text: int = 0  # of those, photos where words were found
    failed: int = 0  # photos whose rendition could not be read
    deleted: int = 0  # rows of photos that are gone
    left: int = 0  # photos of images still without a current row (0 after a full run)
    rows: int = 0
    version: int = 0
    seconds: float = 0.0

    @property
    def ms_per_photo(self) -> float:
        return 1000 * self.seconds / self.read if self.read else 0.0


def engine() -> RapidOCR:
    """The process's OCR engine, loaded once (about a second)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            _engine = RapidOCR(
                det_limit_side_len=4096,
                det_limit_type="max",  # never upscale: renditions are small already
                use_cls=False,
                print_verbose=False,
            )
        return _engine


def read_text(picture: bytes) -> tuple[str, int]:
    """The words read in one picture (JPEG/PNG bytes), space-separated, and how many text
    lines were kept; ``("", 0)`` when there are none."""
    result, _ = engine()(picture, use_cls=False)
    lines = [
        str(text)
        for _box, text, score in (result or [])
        if float(score) >= MIN_SCORE and len(str(text).strip()) >= MIN_CHARS
    ]
    words = [w for line in lines for w in _WORD.findall(line)]
    return " ".join(words), len(lines)


def sync_photo_text(tables: Tables, log: logging.Logger | None = None) -> OcrStats:
    """Read the photos of ``images`` without a current row; drop rows of deleted photos."""
    log = log or logging.getLogger(__name__)
    stats = OcrStats(mode="noop")
    if not tables.exists("images"):
        return stats
    tables.open("photo_text")  # created on first use, with its change feed
    quoted = OCR_VERSION.replace("'", "''")
    todo = [
        r["image_id"]
        for r in tables.query(
            "images",
            "SELECT i.image_id FROM images i LEFT JOIN photo_text p "
            f"ON p.image_id = i.image_id AND p.ocr_version = '{quoted}' "
            "WHERE p.image_id IS NULL ORDER BY i.image_id",
            also=["photo_text"],
        )
        .read_all()
        .to_pylist()
    ]
    gone = [
        r["image_id"]
        for r in tables.query(
            "photo_text",
            "SELECT p.image_id FROM photo_text p LEFT JOIN images i ON i.image_id = p.image_id "
            "WHERE i.image_id IS NULL",
            also=["images"],
        )
        .read_all()
        .to_pylist()
    ]
    if gone:
        stats.deleted = tables.delete_keys("photo_text", "image_id", gone)
    if todo:
        stats.mode = "read"
        log.info("OCR: %d photos to read (%s)", len(todo), OCR_VERSION)
        _read_all(tables, todo, stats, log)
    stats.rows = tables.count("photo_text")
    stats.version = tables.version("photo_text")
    log.info(
        "OCR: %d photos read (%d with text, %d failed) in %.1f s, %d rows deleted",
        stats.read,
        stats.with_text,
        stats.failed,
        stats.seconds,
        stats.deleted,
    )
    return stats


def _read_all(tables: Tables, ids: list[str], stats: OcrStats, log: logging.Logger) -> None:
    pending: list[dict] = []

    def flush() -> None:
        if pending:
            tables.upsert("photo_text", pa.Table.from_pylist(pending, PHOTO_TEXT), ["image_id"])
            pending.clear()

    start = time.perf_counter()
    for i in range(0, len(ids), LOOKUP):
        part = ", ".join("'" + x.replace("'", "''") + "'" for x in ids[i : i + LOOKUP])
        sql = (
            "SELECT image_id, path, COALESCE(rendition, bytes) AS picture FROM images "
            f"WHERE image_id IN ({part})"
        )
        for batch in tables.query("images", sql):
            for row in batch.to_pylist():
                try:
                    text, boxes = read_text(row["picture"])
                except Exception as e:  # a picture OCR cannot read: an empty row, named once
                    log.warning("OCR could not read %s: %s", row["path"], e)
                    text, boxes = "", 0
                    stats.failed += 1
                stats.read += 1
                stats.with_text += bool(text)
                pending.append(
                    {
                        "image_id": row["image_id"],
                        "text": text,
                        "boxes": boxes,
                        "ocr_version": OCR_VERSION,
                        "read_at": datetime.now(UTC),
                    }
                )
                if len(pending) >= WRITE_EVERY:
                    flush()
    flush()
    stats.seconds = time.perf_counter() - start


def words_for(tables: Tables, ids: list[str]) -> dict[str, str]:
    """``{image_id: words}`` for the photos of ``ids`` that have words (none when OCR never
    ran, or the table is missing)."""
    if not ids or not tables.exists("photo_text"):
        return {}
    out: dict[str, str] = {}
    for i in range(0, len(ids), LOOKUP):
        part = ", ".join("'" + x.replace("'", "''") + "'" for x in ids[i : i + LOOKUP])
        sql = f"SELECT image_id, text FROM photo_text WHERE text <> '' AND image_id IN ({part})"
        for batch in tables.query("photo_text", sql):
            out.update({r["image_id"]: r["text"] for r in batch.to_pylist()})
    return out
