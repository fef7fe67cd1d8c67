"""`make bench`: image_embeddings on Ray with 1 and 2 encoder actors, against in-process.

The pet sample (``ADRAG_BENCH_IMAGES``) is ingested once; then ``image_embeddings`` embeds
all of it three times from the same ``images`` table, in the same run: in-process (the
baseline), and on a local Ray cluster (``ray.init`` on this machine's CPUs) with 1 and with 2
actors. Each actor holds one CPU, and Ray gives its torch one thread, so on 2 cores the goal
is 2 actors >= 1.6x one. Printed per run: wall seconds of the step (Ray's include starting
the actors and loading the model in each), and the steady rate, photos/s between the first
vectors back and the last (what a long backfill runs at). The encoder is
``ADRAG_BENCH_ENCODER`` (``random:ViT-B-32``) at ``ADRAG_PRECISION`` (``auto``). Not a timed
test: figures on a shared machine are noisy.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.embeddings.ray_embed import RayEmbedder
from adrag_assets.embeddings.sync import sync_embeddings
from adrag_assets.images.sync import sync_images
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume
from bench.throughput import DEFAULT_IMAGES, make_volume


def on_ray(tables: Tables, spec: str, precision: str, batch: int, actors: int) -> dict:
    """Run the Ray pipeline over every image, as image_embeddings would; time it."""
    ids = tables.read("images", ["image_id"]).column("image_id")
    embedder = RayEmbedder(spec, precision, batch, actors)
    start = time.perf_counter()
    ds, where = embedder.pipeline(tables, pa.array(ids, pa.string()), tables.version("images"))
    first = last = None
    n = after_first = 0
    for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        last = time.perf_counter()
        if first is None:
            first = last
        else:
            after_first += out.num_rows
        n += out.num_rows
    wall = time.perf_counter() - start
    steady = after_first / (last - first) if last and last > first else 0.0
    return {"where": where, "photos": n, "wall_s": wall, "steady": steady}


def main() -> None:
    src = Path(os.environ.get("ADRAG_BENCH_IMAGES", DEFAULT_IMAGES))
    spec = os.environ.get("ADRAG_BENCH_ENCODER", "random:ViT-B-32")
    precision = os.environ.get("ADRAG_PRECISION", "auto")
    batch = int(os.environ.get("ADRAG_BENCH_RAY_BATCH", "16"))
    logging.disable(logging.INFO)
    import ray

    with tempfile.TemporaryDirectory(prefix="adrag-ray-bench-") as tmp:
        root = Path(tmp)
        make_volume(src, root / "volume")
        tables = Tables(root / "tables")
        sync_images(open_volume(str(root / "volume")), tables)
        encoder = load_encoder(spec, precision)
        stats = sync_embeddings(tables, encoder, batch)
        base = stats.embedded / stats.seconds
        shutil.rmtree(root / "tables" / "image_embeddings")
        print(f"== image_embeddings on Ray ({spec}, {encoder.precision}, {stats.embedded} photos)")
        print(f"in-process (torch on all cores): {base:.1f} photos/s ({stats.seconds:.1f} s)")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=str(root / "ray"))
        try:
            runs = {k: on_ray(tables, spec, precision, batch, k) for k in (1, 2)}
        finally:
            ray.shutdown()
        for r in runs.values():
            print(
                f"Ray, {r['where']}: steady {r['steady']:.1f} photos/s, wall {r['wall_s']:.1f} s "
                f"({r['photos']} photos, actors' start-up included)"
            )
        one, two = runs[1]["steady"], runs[2]["steady"]
        if one:
            print(
                f"2 actors / 1 actor: {two / one:.2f}x steady (goal >= 1.6 on 2 cores), "
                f"{runs[1]['wall_s'] / runs[2]['wall_s']:.2f}x wall; "
                f"2 actors / in-process: {two / base:.2f}x"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
