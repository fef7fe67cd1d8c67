"""`make bench`, part 3: what a search and `adrag status` cost on top of their real work.

1. In-process ``search()`` p50/p95 against its parts measured in the same run, interleaved
   query by query: the text encoding plus Milvus' hybrid search on the named collection
   (the floor), and ``search()`` as it was before the live collection was kept (alias,
   collection properties and encoder look-up on every call).
2. Wall time of `adrag status --json` (median of 5 fresh processes), of `adrag --help`, and
   of loading the Dagster code location (median of 3).

A home is built with `adrag ingest` from the first ``ADRAG_BENCH_SEARCH_PHOTOS`` (96) pet
photos, with the offline encoder at ViT-B-32 size (``ADRAG_BENCH_ENCODER``, default
``random:ViT-B-32``): random weights, so timings are real and rankings are not.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.index.milvus import PROP_ENCODER_SPEC, MilvusIndex
from adrag_assets.index.search import LIVE, live_encoder, search, search_collection
from adrag_assets.settings import load_settings
from bench.throughput import DEFAULT_IMAGES, QUERIES, REPO, percentiles

BIN = Path(sys.executable).parent
REPS = 8  # passes over the queries


def wall(args: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall seconds of ``runs`` fresh processes (each must succeed)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, env=env, cwd=REPO, check=True, capture_output=True, timeout=600)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_home(home: Path, n_photos: int, encoder: str) -> dict[str, str]:
    images = Path(os.environ.get("ADRAG_BENCH_IMAGES") or DEFAULT_IMAGES)
    photos = sorted((images / "images").glob("*.jpg"))[:n_photos]
    raw = home / "volume" / "raw"
    raw.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, raw / p.name)
    if (images / "labels.csv").is_file():
        shutil.copy(images / "labels.csv", raw / "labels.csv")
    env = {
        **os.environ,
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": encoder,
        "DAGSTER_HOME": str(home / "dagster"),
        "ADRAG_MILVUS_URI": str(home / "milvus" / "adrag.db"),
        "ADRAG_VOLUME": "",
        "ADRAG_TABLES": "",
    }
    print(f"search_latency: ingesting {len(photos)} photos with {encoder} ...", flush=True)
    subprocess.run([str(BIN / "adrag"), "ingest"], env=env, cwd=REPO, check=True, timeout=1800)
    return env


def search_figures(env: dict[str, str]) -> list[tuple[str, str]]:
    os.environ.update(env)  # this process reads the bench home's settings like `adrag` does
    s = load_settings().model_copy(update={"search_mode": "hybrid"})
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    name, encoder = live_encoder(index, s.precision)

    def floor(q: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        vector = encoder.encode_texts([q])[0].tolist()
        t1 = time.perf_counter()
        index.search_hybrid(name, vector, q, 3, "", s.hybrid_ranker, s.hybrid_weights)
        return t1 - t0, time.perf_counter() - t1

    def lookup_before() -> tuple[str, object]:  # what search() looked up on every call
        live = index.live_collection()
        return live, load_encoder(index.properties(live)[PROP_ENCODER_SPEC], s.precision)

    def before(q: str) -> None:  # search() as it was
        live, enc = lookup_before()
        search_collection(
            index, live, enc, q, 3, "", s.search_mode, s.hybrid_ranker, s.hybrid_weights
        )

    def timed(f, *args) -> float:
        t0 = time.perf_counter()
        f(*args)
        return time.perf_counter() - t0

    for q in QUERIES:  # warm-up: first calls compile kernels and load the collection
        floor(q), before(q), search(index, q, 3, precision=s.precision, settings=s)
    encode, milvus, floor_total, cached, uncached, gaps = [], [], [], [], [], []
    lookup_now, lookup_old = [], []
    for rep in range(REPS):
        for q in QUERIES:
            q = f"{q} {rep}"
            e, m = floor(q)
            encode.append(e), milvus.append(m), floor_total.append(e + m)
            cached.append(timed(lambda q=q: search(index, q, 3, precision=s.precision, settings=s)))
            gaps.append(cached[-1] - floor_total[-1])
            uncached.append(timed(before, q))
            lookup_now.append(timed(LIVE.get, index, s.precision))
            lookup_old.append(timed(lookup_before))
    index.close()

    def ms(samples: list[float]) -> str:
        p50, p95 = percentiles(samples)
        return f"{p50:.1f} / {p95:.1f} ms"

    return [
        ("text encode p50 / p95", ms(encode)),
        ("Milvus hybrid search p50 / p95", ms(milvus)),
        ("floor: encode + hybrid search p50 / p95", ms(floor_total)),
        ("search() p50 / p95", ms(cached)),
        ("search() minus the floor, query by query, p50", f"{percentiles(gaps)[0]:+.1f} ms"),
        ("search() as before this change p50 / p95", ms(uncached)),
        ("its look-ups now: alias read, encoder kept", ms(lookup_now)),
        ("its look-ups before: alias, properties, encoder", ms(lookup_old)),
    ]


def main() -> None:
    encoder = os.environ.get("ADRAG_BENCH_ENCODER") or "random:ViT-B-32"
    n_photos = int(os.environ.get("ADRAG_BENCH_SEARCH_PHOTOS") or 96)
    with tempfile.TemporaryDirectory(prefix="adrag-bench-search-") as tmp:
        env = build_home(Path(tmp) / "home", n_photos, encoder)
        adrag = str(BIN / "adrag")
        load_defs = [sys.executable, "-c", "from adrag_assets.definitions import defs; defs()"]
        # Before this process opens the Milvus Lite file: one process at a time may.
        status = wall([adrag, "status", "--json"], env, 5)
        rows = [
            ("`adrag status --json` wall, median of 5", f"{status:.2f} s"),
            ("`adrag --help` wall, median of 5", f"{wall([adrag, '--help'], env, 5):.2f} s"),
            ("Dagster code location load, median of 3", f"{wall(load_defs, env, 3):.2f} s"),
        ]
        rows += search_figures(env)
    print(f"\n== search and status latency ({encoder}, random weights; {n_photos} photos)")
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:{width}}  {value}")


if __name__ == "__main__":
    main()
