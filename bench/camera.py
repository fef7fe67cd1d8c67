"""`make bench`: camera originals. 12 MP JPEGs (4032x3024) made from the pet sample (upscaled,
with noise so they compress like a camera's, ~3 MB), cached under ~/.cache/adrag-bench (never
committed). Prints the per-photo cost of each way to decode one, the model's forward, and a
first ingest (images + image_embeddings) of ``--count`` (``ADRAG_BENCH_CAMERA_PHOTOS``, 32)
such photos: photos/s, P1-real = photos/s x (decode-once ms + forward ms) / 1000 (1.0: the
pipeline runs at the speed of one decode plus one forward), peak RSS (and its ratio to the
same ingest of 24 of the sample's own photos), and MB of ``images`` per photo against the
originals'. ``--large``: 24 MP photos (6000x4000, ~7 MB) instead, e.g. ``--large --count 200``
for the bounded-memory figure.

``ADRAG_BENCH_BEFORE=/path/to/other/checkout`` runs the same ingest with that checkout's code
too (e.g. ``/work/main``), in the same run, for a before/after table. The encoder is
``ADRAG_BENCH_ENCODER`` (``random:ViT-B-32``) at ADRAG_PRECISION (``auto``). Not a timed test:
figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "oxford-pets-sample"
CACHE = Path("~/.cache/adrag-bench").expanduser()
SIZES = {"12mp": (4032, 3024), "24mp": (6000, 4000)}
DISTINCT = 16  # pictures upscaled per size; more photos repeat them (see camera_photos)

# Run in a fresh interpreter (its own peak RSS) with whichever code PYTHONPATH names: only
# calls both layouts have.
PIPELINE = """
import json, resource, sys, time
from pathlib import Path
from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.embeddings.sync import sync_embeddings
from adrag_assets.images.sync import sync_images
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume
volume, tables_dir, spec, precision = sys.argv[1:5]
encoder = load_encoder(spec, precision)
tables = Tables(tables_dir)
t0, c0 = time.perf_counter(), time.process_time()
images = sync_images(open_volume(volume), tables)
t1, c1 = time.perf_counter(), time.process_time()
emb = sync_embeddings(tables, encoder)
t2, c2 = time.perf_counter(), time.process_time()
mb = sum(f.stat().st_size for f in Path(tables_dir, "images").rglob("*") if f.is_file()) / 1e6
print(json.dumps({
    "added": images.added, "embedded": emb.embedded, "images_s": t1 - t0,
    "embeddings_s": t2 - t1, "images_mb": mb, "cpu_s": c2 - c0,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def camera_photos(src: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` camera-sized JPEGs made once from the sample's photos and cached. Upscaling a
    24 MP photo takes seconds here: past :data:`DISTINCT` pictures, a photo is an earlier one
    with a few bytes after its end-of-image marker (another file, another content hash, the
    same decode work)."""
    folder = CACHE / f"camera-{round(size[0] * size[1] / 1e6)}mp"
    folder.mkdir(parents=True, exist_ok=True)
    pool = sorted(src.rglob("*.jpg"))
    out = []
    for k in range(n):
        target = folder / f"cam{k:03d}.jpg"
        if not target.exists():
            if k < DISTINCT:
                rng = np.random.default_rng(k)
                with Image.open(pool[k % len(pool)]) as im:
                    big = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
                noise = rng.integers(-10, 11, (size[1], size[0], 3), dtype=np.int16)
                pixels = np.clip(np.asarray(big, np.int16) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(target.with_suffix(".tmp"), "JPEG", quality=92)
            else:
                data = out[k % DISTINCT].read_bytes() + f"adrag-bench {k}".encode()
                target.with_suffix(".tmp").write_bytes(data)
            target.with_suffix(".tmp").rename(target)
        out.append(target)
    return out


def per_photo_ms(fn, blobs: list[bytes]) -> float:
    fn(blobs[0])  # warm
    start = time.perf_counter()
    for b in blobs:
        fn(b)
    return (time.perf_counter() - start) / len(blobs) * 1000


def decoders(rendition_px: int) -> dict:
    """Ways to turn a JPEG into what ingest needs, each timed on the same files."""
    from adrag_assets.images.decode import decode

    def full(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    ways = {
        "Pillow full decode": full,
        f"Pillow draft, decode once (ingest: check + EXIF + {rendition_px}px rendition)": (
            lambda data: decode("x.jpg", data, rendition_px)
        ),
    }
    try:
        import torch
        from torchvision.io import decode_jpeg

        ways["torchvision.io.decode_jpeg (CPU, full scale only)"] = lambda data: decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8)
        )
    except ImportError:
        pass
    for name in ("simplejpeg", "pyvips"):
        try:
            __import__(name)
            ways[f"{name}: installed, not measured"] = None
        except ImportError:
            pass
    return ways


def rendition_cosine(
    spec: str, precision: str, blobs: list[bytes], rendition_px: int
) -> tuple[float, float]:
    """The lowest cosine with a full decode's vector: of the rendition's vector, and of the
    vector from a reduced-scale decode of the original (what the model read before)."""
    from adrag_assets.embeddings.encoder import decode_for_model, load_encoder
    from adrag_assets.images.decode import decode, upright_rgb

    encoder = load_encoder(spec, precision)
    worst, before = 1.0, 1.0
    for data in blobs:
        small = decode("x.jpg", data, rendition_px).rendition
        with Image.open(io.BytesIO(data)) as im:
            full = upright_rgb(im)
        a, b, c = encoder.encode_images(
            [
                full,
                decode_for_model(small, encoder.image_size),
                decode_for_model(data, encoder.image_size),
            ]
        )
        worst, before = min(worst, float(a @ b)), min(before, float(a @ c))
    return worst, before


def forward_ms(spec: str, precision: str, rendition: bytes, batch: int = 16) -> tuple[float, str]:
    """One image's share of a batch forward, with the threads the pipeline gives the model."""
    from adrag_assets.embeddings.encoder import decode_for_model, load_encoder
    from adrag_assets.embeddings.pipeline import set_model_threads

    encoder = load_encoder(spec, precision)
    set_model_threads(encoder)
    pixels = encoder.pixels(decode_for_model(rendition, encoder.image_size))
    import torch

    stack = torch.stack([pixels] * batch)
    encoder.encode_pixels(stack)  # warm
    start = time.perf_counter()
    runs = 3
    for _ in range(runs):
        encoder.encode_pixels(stack)
    return (time.perf_counter() - start) / (runs * batch) * 1000, encoder.precision


def pipeline(code: Path, photos: list[Path], spec: str, precision: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="adrag-bench-camera-") as tmp:
        raw = Path(tmp, "volume", "raw", "cam")
        raw.mkdir(parents=True)
        for p in photos:
            try:  # a hard link: a large run copies no gigabytes
                os.link(p, raw / p.name)
            except OSError:
                shutil.copy(p, raw / p.name)
        env = {**os.environ, "PYTHONPATH": str(code)}
        out = subprocess.run(
            [sys.executable, "-c", PIPELINE, str(Path(tmp, "volume")), str(Path(tmp, "t")), spec]
            + [precision],
            env=env,
            cwd=tmp,  # ``-c`` puts the working folder first on sys.path
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None, help="photos in the ingest")
    parser.add_argument("--large", action="store_true", help="24 MP photos instead of 12 MP")
    args = parser.parse_args()
    src = Path(os.environ.get("ADRAG_BENCH_IMAGES", DEFAULT_IMAGES))
    n = args.count or int(os.environ.get("ADRAG_BENCH_CAMERA_PHOTOS", "32"))
    size = SIZES["24mp" if args.large else "12mp"]
    spec = os.environ.get("ADRAG_BENCH_ENCODER", "random:ViT-B-32")
    precision = os.environ.get("ADRAG_PRECISION", "auto")
    before = os.environ.get("ADRAG_BENCH_BEFORE")
    rendition_px = int(os.environ.get("ADRAG_RENDITION_PX", "512"))
    photos = camera_photos(src, n, size)
    blobs = [p.read_bytes() for p in photos[:8]]
    originals_mb = sum(p.stat().st_size for p in photos) / 1e6
    print(f"camera originals: {len(photos)} JPEGs of {size[0]}x{size[1]}, {originals_mb:.1f} MB")
    print("\n| decode, per photo | ms |\n|---|---|")
    once = None
    for name, fn in decoders(rendition_px).items():
        if fn is None:
            print(f"| {name} | - |")
            continue
        ms = per_photo_ms(fn, blobs)
        if name.startswith("Pillow draft"):
            once = ms
        print(f"| {name} | {ms:.1f} |")
    from adrag_assets.images.decode import decode

    rendition = decode("x.jpg", blobs[0], rendition_px).rendition
    fwd, picked = forward_ms(spec, precision, rendition)
    print(f"| {spec} image forward ({precision} -> {picked}), batch 16 | {fwd:.1f} |")
    cos, draft = rendition_cosine(spec, precision, blobs, rendition_px)
    print(
        f"\nvector vs a full decode's: from the rendition cosine >= {cos:.5f}; "
        f"from a reduced decode of the original (before) >= {draft:.5f}"
    )
    limit = 1000 / (once + fwd)
    print(f"\nlimit (one decode-once + one forward): {limit:.1f} photos/s")
    sample = sorted(src.rglob("*.jpg"))[:24]
    runs = [("this code", REPO, photos)] + ([("before", Path(before), photos)] if before else [])
    runs.append(("this code, 24 sample photos (RSS baseline)", REPO, sample))
    print(
        "\n| code | photos | photos/s | P1-real | images s | embeddings s | CPU s | peak RSS MB "
        "| MB of images per photo | vs originals |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rss = {}
    for label, code, files in runs:
        r = pipeline(code, files, spec, precision)
        total = r["images_s"] + r["embeddings_s"]
        rate = r["embedded"] / total if total else 0.0
        mb = sum(p.stat().st_size for p in files) / 1e6
        rss[label] = r["rss_mb"]
        p1 = "-" if files is sample else f"{rate / limit:.2f}"  # the limit is a camera photo's
        print(
            f"| {label} | {len(files)} | {rate:.1f} | {p1} | {r['images_s']:.1f} "
            f"| {r['embeddings_s']:.1f} | {r.get('cpu_s', 0):.1f} | {r['rss_mb']:.0f} "
            f"| {r['images_mb'] / len(files):.3f} | {100 * r['images_mb'] / mb:.1f} % |"
        )
    base = rss["this code, 24 sample photos (RSS baseline)"]
    print(
        f"\npeak RSS of {len(photos)} camera photos / 24 sample photos: "
        f"{rss['this code'] / base:.2f}x (goal <= 1.3x); load average {os.getloadavg()[0]:.1f} "
        "(2 cores shared: figures vary with it)"
    )


if __name__ == "__main__":
    main()
