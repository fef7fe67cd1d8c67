"""`make bench`: embedding throughput, fp32 vs bf16, search latency and ingest memory.

Runs on the pet sample (``ADRAG_BENCH_IMAGES``, default ../shared/datasets/oxford-pets-sample)
with the offline encoder at ViT-B-32 size (``ADRAG_BENCH_ENCODER``, default
``random:ViT-B-32``): random weights, so speed and memory are real and rankings are not.
Absolute timings on a shared machine are noisy: each figure is set against a baseline
measured in the same run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adrag_assets.embeddings.encoder import (
    ClipEncoder,
    cpu_has_bf16,
    decode_for_model,
    resolve_precision,
)
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.embeddings.sync import sync_embeddings
from adrag_assets.images.sync import sync_images
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.sync import sync_index
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "oxford-pets-sample"
QUERIES = [
    "a beagle on a lawn",
    "a sleepy cat",
    "a puppy at the beach",
    "a black cat on a sofa",
    "a dog with a ball",
    "a fluffy white dog",
    "a kitten in the sun",
    "a pug in a city",
]


def make_volume(src: Path, volume: Path) -> None:
    """The sample's photos under raw/pets and its labels.csv under raw/."""
    shutil.copytree(src / "images" if (src / "images").is_dir() else src, volume / "raw" / "pets")
    if (src / "labels.csv").exists():
        shutil.copy(src / "labels.csv", volume / "raw" / "labels.csv")


def forward_only(encoder: ClipEncoder, files: list[Path], batch: int) -> float:
    """Images/s of the model alone, on tensors decoded and preprocessed beforehand."""
    pixels = [encoder.pixels(decode_for_model(f.read_bytes(), encoder.image_size)) for f in files]
    # Warm-up over every batch shape: oneDNN compiles kernels per shape on first use.
    for i in range(0, len(pixels), batch):
        encoder.encode_pixels(torch.stack(pixels[i : i + batch]))
    start = time.perf_counter()
    for i in range(0, len(pixels), batch):
        encoder.encode_pixels(torch.stack(pixels[i : i + batch]))
    return len(pixels) / (time.perf_counter() - start)


def pipeline(encoder: ClipEncoder, tables_root: Path, batch: int) -> tuple[float, Tables]:
    """Images/s of the whole image_embeddings step: read Delta, decode, encode, write."""
    tables = Tables(tables_root)
    stats = sync_embeddings(tables, encoder, batch)
    return stats.embedded / stats.seconds, tables


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1e3, float(np.percentile(samples, 95)) * 1e3


def peak_rss_of_ingest(images: Path, encoder: str, work: Path) -> float:
    """Peak RSS (MiB) of `adrag ingest` and its children, sampled every 50 ms, fresh home."""
    import psutil

    home = work / "rss-home"
    make_volume(images, home / "volume")
    env = {**os.environ, "ADRAG_HOME": str(home), "ADRAG_ENCODER": encoder}
    for key in ("ADRAG_VOLUME", "ADRAG_MILVUS_URI", "DAGSTER_HOME"):
        env.pop(key, None)
    adrag = str(Path(sys.executable).parent / "adrag")
    proc = subprocess.Popen(
        [adrag, "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    if proc.returncode:
        raise RuntimeError("adrag ingest failed in the RSS measurement")
    return peak / 2**20


def embedding_matrix(tables: Tables, encoder_id: str) -> tuple[list[str], np.ndarray]:
    """Every (image_id, vector) of one encoder as ids and an (N, dim) matrix: the bench
    compares exact numpy search with Milvus on the sample, so it wants them all at once."""
    t = tables.read("image_embeddings", ["image_id", "embedding"], f"encoder_id = '{encoder_id}'")
    return t.column("image_id").to_pylist(), np.stack(
        t.column("embedding").to_numpy(zero_copy_only=False)
    ).astype(np.float32)


def _add_bf16_rows(rows: list[tuple[str, str, str]], results: dict) -> None:
    enc32, _, b32, t32 = results["fp32"]
    _, _, b16, t16 = results["bf16"]
    ids32, m32 = embedding_matrix(t32, enc32.encoder_id)
    ids16, m16 = embedding_matrix(t16, enc32.encoder_id)
    order = {i: k for k, i in enumerate(ids16)}
    cos = (m32 * m16[[order[i] for i in ids32]]).sum(axis=1)
    rows.append(("bf16 vs fp32 pipeline speed", f"{b16 / b32:.2f}x", "fp32 = 1.00x"))
    rows.append(
        (
            "bf16 vs fp32 cosine, min / mean",
            f"{cos.min():.5f} / {cos.mean():.5f}",
            "target min >= 0.999",
        )
    )


def main() -> None:
    images = Path(os.environ.get("ADRAG_BENCH_IMAGES") or DEFAULT_IMAGES)
    spec = os.environ.get("ADRAG_BENCH_ENCODER") or "random:ViT-B-32"
    batch = int(os.environ.get("ADRAG_BATCH_SIZE") or 32)
    precision = resolve_precision(os.environ.get("ADRAG_PRECISION") or "auto", "cpu")
    files = sorted((images / "images").glob("*.jpg")) or sorted(images.rglob("*.jpg"))
    print(
        f"bench: {len(files)} photos from {images}, encoder {spec} (random weights), "
        f"batch {batch}, configured precision {precision}, torch threads {torch.get_num_threads()}"
    )
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="adrag-bench-") as tmp:
        work = Path(tmp)
        make_volume(images, work / "volume")
        base = work / "tables-base"
        sync_images(open_volume(work / "volume"), Tables(base))

        results = {}
        # bf16 only where the CPU computes it natively: emulated bf16 (e.g. AMD EPYC without
        # AVX512-BF16) is far slower than fp32 and took over 30 minutes here.
        native_bf16 = cpu_has_bf16()
        wanted = [precision, "fp32"] + (["bf16"] if native_bf16 else [])
        if not native_bf16:
            print("bench: this CPU has no native bf16 (avx512_bf16/amx_bf16): bf16 is skipped")
        for prec in dict.fromkeys(p for p in wanted if p == "fp32" or native_bf16):
            enc = ClipEncoder(EncoderSpec.parse(spec), precision=prec)
            a = forward_only(enc, files, batch)
            shutil.copytree(base, work / f"tables-{prec}")
            b, tables = pipeline(enc, work / f"tables-{prec}", batch)
            results[prec] = (enc, a, b, tables)
            rows.append((f"[{prec}] (a) model forward only", f"{a:.1f} img/s", "baseline"))
            rows.append(
                (
                    f"[{prec}] (b) image_embeddings asset",
                    f"{b:.1f} img/s",
                    f"b/a = {b / a:.2f} (target >= 0.8)",
                )
            )

        enc32, _, b32, t32 = results["fp32"]
        if "bf16" not in results:
            rows.append(("bf16 vs fp32", "skipped", "no native bf16 on this CPU"))
        else:
            _add_bf16_rows(rows, results)
        precision = precision if precision in results else "fp32"
        enc, _, _, tables = results[precision]
        index = MilvusIndex(str(work / "milvus" / "bench.db"))
        name = sync_index(tables, index, enc.encoder_id, spec, enc.dim).collection
        ids, matrix = embedding_matrix(tables, enc.encoder_id)
        for q in QUERIES:  # warm-up: first calls compile kernels and load the collection
            enc.encode_texts([q]), index.search_dense(name, matrix[0].tolist(), 3)
        t_text, t_milvus, t_numpy, overlap = [], [], [], []
        for rep in range(6):
            for q in QUERIES:
                t0 = time.perf_counter()
                vec = enc.encode_texts([f"{q} {rep}"])[0]
                t1 = time.perf_counter()
                hits = index.search_dense(name, vec.tolist(), 3)
                t2 = time.perf_counter()
                top = np.argpartition(-(matrix @ vec), 3)[:3]
                t3 = time.perf_counter()
                t_text.append(t1 - t0), t_milvus.append(t2 - t1), t_numpy.append(t3 - t2)
                overlap.append(len({h.image_id for h in hits} & {ids[i] for i in top}) / 3)
        index.close()
        text, mil, npy = percentiles(t_text), percentiles(t_milvus), percentiles(t_numpy)
        e2e = percentiles([a + b for a, b in zip(t_text, t_milvus, strict=True)])
        rows.append(("search: text encode p50 / p95", f"{text[0]:.1f} / {text[1]:.1f} ms", ""))
        rows.append(
            (
                "search: NumPy brute-force top-3 p50 / p95",
                f"{npy[0]:.3f} / {npy[1]:.3f} ms",
                "baseline",
            )
        )
        rows.append(
            (
                "search: Milvus Lite top-3 p50 / p95",
                f"{mil[0]:.2f} / {mil[1]:.2f} ms",
                f"p50 = {mil[0] / npy[0]:.0f}x NumPy; same top-3: {np.mean(overlap):.0%}",
            )
        )
        rows.append(
            (
                "search: encode + top-3 p50 / p95",
                f"{e2e[0]:.1f} / {e2e[1]:.1f} ms",
                f"{len(t_text)} queries over {len(ids)} vectors",
            )
        )
        rss = peak_rss_of_ingest(images, spec, work)
        rows.append(("peak RSS of `adrag ingest`", f"{rss:.0f} MiB", f"{len(files)} photos"))

    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")


if __name__ == "__main__":
    main()
