"""Delta maintenance on a library grown in many small commits: ``images`` bytes and file
counts before and after, against the bytes of its live photos.

    PYTHONPATH=. .venv/bin/python -m bench.maintenance [--copies 10] [--work DIR]

Each round adds one jittered copy of the pet photos (296) and moves 20 earlier photos, so
merges rewrite files holding photos, as uploads and reorganisations do. Not in `make test`.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from adrag_assets.images.sync import sync_images
from adrag_assets.tables import Tables
from adrag_assets.tables_maintenance import MB, figures, maintain_tables
from adrag_assets.volume import open_volume
from bench.incremental import variant
from bench.throughput import DEFAULT_IMAGES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="adrag-maint-"))
    raw, tables = work / "volume" / "raw", Tables(work / "tables")
    photos = sorted((Path(DEFAULT_IMAGES) / "images").glob("*.jpg"))
    rng = random.Random(0)
    for k in range(args.copies):
        for p in photos:
            target = raw / f"v{k}" / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(variant(p, k))
        earlier = sorted(raw.glob("v*/*.jpg"))
        for p in rng.sample(earlier, min(20, len(earlier))):
            p.rename(p.with_name(f"m{k}_{p.name}"))
        stats = sync_images(open_volume(work / "volume"), tables)
        print(f"round {k + 1}/{args.copies}: {stats.images} images, v{stats.version}", flush=True)
    before = {n: figures(tables, n) for n in ("images", "volume_files")}
    t0 = time.perf_counter()
    done = maintain_tables(tables, lambda _t: None)
    took = time.perf_counter() - t0
    out = {"work": str(work), "maintenance_s": round(took, 1)}
    for m in done:
        b, a = m.before, m.after
        out[m.table] = {
            "versions": f"{b.version}->{a.version}",
            "stored_files": f"{b.stored_files}->{a.stored_files}",
            "live_files": f"{b.live_files}->{a.live_files}",
            "MB_on_storage": f"{b.total_bytes / MB:.1f}->{a.total_bytes / MB:.1f}",
        }
        if a.photo_bytes:
            out[m.table]["photo_MB"] = round(a.photo_bytes / MB, 1)
            out[m.table]["ratio"] = (
                f"{b.total_bytes / b.photo_bytes:.2f}->{a.total_bytes / a.photo_bytes:.2f}"
            )
    assert before["images"].version == done[0].before.version
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
