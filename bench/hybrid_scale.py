"""Hybrid search against the library's size, without the photo pipeline (minutes, not hours).

A Milvus Lite collection of N rows is built with the project's own index code
(``MilvusIndex.ensure_collection`` / ``upsert`` / ``flush``): random unit vectors, and labels
drawn from the pet sample's ``labels.csv`` (breed, species) with a short caption, so BM25 sees the
sample's words at realistic frequencies. Built once per (N, dim), cached under
``~/.cache/adrag-bench``.

Per query, interleaved, p50/p95 of: the dense side alone, the BM25 side alone (``text``: the
query as typed; ``words``: without stop words), the hybrid as the product calls it
(``hybrid``: ``search_collection`` with a precomputed vector), Milvus's
``hybrid_search`` as the product called it before (``before``: both sides over the whole
collection, plus the relevance floor's separate BM25 probe), and the product's search path
today excluding the text encoder (``search``: the floor and ``_search_in`` with diversity, a
precomputed vector).

    python -m bench.hybrid_scale [--sizes 20000] [--large] [--dim 512] [--queries 200]
"""

from __future__ import annotations

import csv
import random
import time
from pathlib import Path

import click
import numpy as np
from pymilvus import AnnSearchRequest, WeightedRanker

from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.index.floor import evidence_words
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.search import LiveCollection, _search_if_relevant, search_collection
from adrag_assets.settings import load_settings
from bench.throughput import DEFAULT_IMAGES, QUERIES, percentiles

CACHE = Path.home() / ".cache" / "adrag-bench"
SPEC = "random:ViT-B-32"  # the near-duplicate threshold of random weights (0.999)
COLORS = ["black", "white", "brown", "grey", "ginger", "cream", "spotted", "fluffy"]
SCENES = [
    "on a sofa",
    "on a lawn",
    "at the beach",
    "in the sun",
    "in a city",
    "with a ball",
    "sleeping",
    "in the snow",
    "on a bed",
    "in a garden",
]


def sample_labels(images: Path) -> list[tuple[str, str]]:
    with (images / "labels.csv").open() as f:
        return sorted({(r["breed"], r["species"]) for r in csv.DictReader(f)})


def build(n: int, dim: int, images: Path) -> tuple[MilvusIndex, str]:
    """The cached collection of ``n`` rows (built on first use)."""
    root = CACHE / f"hybrid-{n}-{dim}"
    index = MilvusIndex(str(root / "milvus.db"), alias="bench")
    done = root / "BUILT"
    name = index.ensure_collection(f"bench-{dim}", dim, SPEC)
    if done.exists():
        index.flush(name)  # caches built before the index flushed after writing
        return index, name
    rng = np.random.default_rng(n)
    pets = sample_labels(images)
    t0 = time.perf_counter()
    for start in range(0, n, 2000):
        m = min(2000, n - start)
        v = rng.standard_normal((m, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        rows = []
        for i in range(m):
            breed, species = pets[rng.integers(len(pets))]
            caption = f"a {COLORS[rng.integers(len(COLORS))]} {species} "
            caption += SCENES[rng.integers(len(SCENES))]
            rows.append(
                {
                    "image_id": f"{start + i:016x}",
                    "path": f"pets/{breed}_{start + i}.jpg",
                    "labels": {"breed": breed, "species": species, "caption": caption},
                    "vector": v[i].tolist(),
                }
            )
        index.upsert(name, rows)
    index.flush(name)  # as sync_index does: no row left in Milvus Lite's memtable
    done.write_text(f"{time.perf_counter() - t0:.1f} s\n")
    return index, name


def make_queries(images: Path, count: int) -> list[str]:
    rng = random.Random(0)
    breeds = [b.replace("_", " ") for b, _ in sample_labels(images)]
    qs = list(QUERIES)
    while len(qs) < count:
        b = rng.choice(breeds)
        qs.append(rng.choice([b, f"a {b}", f"a {b} {rng.choice(SCENES)}", f"a photo of a {b}"]))
        qs.append(
            f"a {rng.choice(COLORS)} {rng.choice(['dog', 'cat', 'puppy'])} {rng.choice(SCENES)}"
        )
    return qs[:count]


def before(index: MilvusIndex, name: str, vector: list[float], query: str, k: int) -> list:
    """The product's index calls before this change: the floor's BM25 probe, then Milvus's
    hybrid_search with both sides over the whole collection, then the candidates' vectors."""
    words = evidence_words(query)
    if words:
        index.search_text(name, words, 1)
    reqs = [
        AnnSearchRequest([vector], "vector", {"metric_type": "COSINE", "params": {"ef": 64}}, 50),
        AnnSearchRequest([query], "sparse", {"metric_type": "BM25"}, 50),
    ]
    res = index.client.hybrid_search(
        name, reqs, WeightedRanker(0.5, 0.5), limit=k + 8, output_fields=["path", "labels"]
    )
    hits = [h.get("image_id") or h["id"] for h in res[0]]
    index.vectors(name, hits)
    return hits


def measure(n: int, dim: int, images: Path, count: int) -> dict[str, tuple[float, float]]:
    index, name = build(n, dim, images)
    s = load_settings()
    live = LiveCollection(name, f"bench-{dim}", load_encoder("random:adrag-tiny", "auto"), SPEC)
    rng = np.random.default_rng(1)
    queries = make_queries(images, count)
    vectors = rng.standard_normal((len(queries), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def product(q: str, v: list[float]) -> list:
        # search_live less the encoder and the Delta reads (archived photos, dates).
        return _search_if_relevant(index, live, q, 3, "", s, vector=v)

    parts = {
        "dense": lambda q, v: index.search_dense(name, v, 50),
        "text": lambda q, v: index.search_text(name, q, 50),
        "words": lambda q, v: index.search_text(name, evidence_words(q) or q, 50),
        "hybrid": lambda q, v: search_collection(index, name, live.encoder, q, 3, vector=v),
        "before": lambda q, v: before(index, name, v, q, 3),
        "search": product,
    }
    for q, v in zip(queries[:10], vectors[:10], strict=True):  # warm-up
        for fn in parts.values():
            fn(q, v.tolist())
    times: dict[str, list[float]] = {k: [] for k in parts}
    for q, v in zip(queries, vectors, strict=True):
        vec = v.tolist()
        for key, fn in parts.items():
            t0 = time.perf_counter()
            fn(q, vec)
            times[key].append(time.perf_counter() - t0)
    index.close()
    return {k: percentiles(t) for k, t in times.items()}


@click.command()
@click.option("--sizes", default="20000", help="Collection sizes, comma-separated.")
@click.option("--large", is_flag=True, help="Add N = 100,000.")
@click.option("--dim", default=512, help="Vector size (512: ViT-B-32).")
@click.option("--queries", default=200)
@click.option("--images", type=click.Path(path_type=Path), default=DEFAULT_IMAGES)
def main(sizes: str, large: bool, dim: int, queries: int, images: Path) -> None:
    if large:
        sizes += ",100000"
    print(f"== hybrid search vs. library size (dim {dim}, {queries} queries; ms p50 / p95)")
    rows = {int(n): measure(int(n), dim, images, queries) for n in sizes.split(",")}
    keys = next(iter(rows.values())).keys()
    print(f"{'N':>8}  " + "  ".join(f"{k:>15}" for k in keys))
    for n, r in rows.items():
        print(f"{n:>8}  " + "  ".join(f"{r[k][0]:>6.1f} / {r[k][1]:>6.1f}" for k in keys))
    for n, r in rows.items():
        print(f"{n:>8}: search p95 / before p95 = {r['search'][1] / r['before'][1]:.2f}")


if __name__ == "__main__":
    main()
