"""`make bench`: what reading text in photos (the ``photo_text`` asset) costs per photo.

Ingests ``ADRAG_BENCH_OCR_PHOTOS`` photos of the pet sample (default 100; ``ADRAG_BENCH_IMAGES``
as for the other benchmarks) into a temporary home, then times :func:`sync_photo_text` over
their renditions: RapidOCR (PP-OCRv4) on ONNX Runtime, CPU, as a run does it (model load
excluded, Delta commits included). A second run shows the incremental case: nothing to read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from adrag_assets.images.ocr import engine, sync_photo_text
from adrag_assets.images.sync import sync_images
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "oxford-pets-sample"


def main() -> None:
    src = Path(os.environ.get("ADRAG_BENCH_IMAGES", DEFAULT_IMAGES))
    n = int(os.environ.get("ADRAG_BENCH_OCR_PHOTOS", "100"))
    photos = sorted((src / "images" if (src / "images").is_dir() else src).glob("*.jpg"))[:n]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "volume" / "raw" / "pets"
        raw.mkdir(parents=True)
        for p in photos:
            shutil.copy(p, raw / p.name)
        tables = Tables(Path(tmp) / "tables")
        sync_images(open_volume(str(Path(tmp) / "volume")), tables)
        started = time.perf_counter()
        engine()
        load = time.perf_counter() - started
        stats = sync_photo_text(tables)
        started = time.perf_counter()
        again = sync_photo_text(tables)
        noop = time.perf_counter() - started
    print("== text in photos (OCR of the renditions, RapidOCR PP-OCRv4 on ONNX Runtime, CPU)")
    print(f"  OCR ms per photo:  {stats.ms_per_photo:.0f}  ({stats.read} photos, ", end="")
    print(f"{stats.with_text} with text; model load {load:.1f} s once per process)")
    print(f"  296-photo sample:  ~{stats.ms_per_photo * 296 / 1000:.0f} s of OCR at first ingest")
    print(f"  incremental run:   {again.read} photos read, {noop * 1000:.0f} ms")


if __name__ == "__main__":
    main()
