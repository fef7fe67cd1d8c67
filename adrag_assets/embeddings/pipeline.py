"""From picture bytes (renditions) to unit vectors, the model never waiting for decoding.

A pool of threads decodes and preprocesses pictures (Pillow and libjpeg-turbo release the
GIL) into a bounded window, at most two model batches ahead, while the model encodes the
current batch: memory stays at a few batches of small tensors however many photos come.

Two entry points: :func:`encode_renditions` (bytes in, vectors out: what a worker elsewhere,
e.g. a Ray actor, calls on a block of renditions) and :func:`encode_stream` (the
``image_embeddings`` step's loop over rows streamed from Delta).

With ``encoder.decode_on_device`` (by default on a GPU), JPEGs are decoded and resized by
torchvision on the model's device (nvjpeg on CUDA) instead of Pillow; anything else (PNG,
a JPEG stored sideways, one torchvision refuses) takes Pillow's path. Both give the model
the same picture up to resampling (tests/assets/test_embed_pipeline.py runs the tensor path
on the CPU).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

    from adrag_assets.embeddings.encoder import ClipEncoder

AHEAD = 2  # model batches decoded ahead of the one being encoded
_JPEG = b"\xff\xd8"


def cpus() -> int:
    """CPUs this process may use (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def prep_workers(encoder: ClipEncoder) -> int:
    """Threads decoding for the model. On the CPU the model takes most of each photo's time
    (a 224-pixel forward costs several decodes of a 512-pixel rendition) and all the cores'
    threads: a quarter of them decode, one at least. On a GPU the CPU only decodes."""
    n = cpus()
    return n if encoder.device != "cpu" else max(1, n // 4)


def set_model_threads(encoder: ClipEncoder) -> None:
    """At most one torch thread per CPU the process may run on: torch's default can count
    cores of the host it may not use, and threads that outnumber the cores stall each other
    (and the decoding threads) at every parallel op. Fewer are left alone: a Ray actor of
    one CPU runs one thread (OMP_NUM_THREADS=1)."""
    import torch

    if encoder.device == "cpu" and torch.get_num_threads() > cpus():
        torch.set_num_threads(cpus())


def tensor_picture(encoder: ClipEncoder, data: bytes) -> torch.Tensor | None:
    """A JPEG decoded by torchvision on the encoder's device and resized as open_clip does
    (shortest side to the model's size, bicubic with antialias, centre crop), as 8-bit CHW
    (:func:`model_input` normalises it); None when Pillow's path must take it: not a JPEG, or
    one stored sideways (nvjpeg ignores EXIF orientation; renditions made at ingest are
    upright and carry none, a small photo kept as its own rendition may)."""
    if not data.startswith(_JPEG) or _exif_orientation(data) not in (None, 1):
        return None
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    image = decode_jpeg(raw, mode=ImageReadMode.RGB, device=encoder.device)
    size = encoder.image_size
    # In float: bicubic with antialias on uint8 is CPU-only; the same op on both devices.
    x = F.resize(image.float(), [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return F.center_crop(x, [size, size]).round_().clamp_(0, 255).to(torch.uint8)


def _exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation tag of an image (None: none or unreadable); reads the header
    only."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.getexif().get(0x0112)
    except Exception:  # unreadable header: the decoder will say why
        return None


def picture(encoder: ClipEncoder, data: bytes) -> torch.Tensor:
    """One picture decoded for the model: 8-bit CHW from the device path, else the model
    input Pillow's path and the preprocess make (float CHW); raises on bytes that cannot be
    read."""
    if encoder.decode_on_device:
        try:
            got = tensor_picture(encoder, data)
        except RuntimeError:  # a JPEG torchvision cannot decode (e.g. 12-bit): Pillow's way
            got = None
        if got is not None:
            return got
    from adrag_assets.embeddings.encoder import decode_for_model

    # The whole preprocess here, in the decoding thread: measured in the pipeline, leaving
    # the last steps (to tensor, normalise) to the model's thread made the forward slower.
    return encoder.pixels(decode_for_model(data, encoder.image_size))


def _prepared(encoder: ClipEncoder, data: bytes) -> tuple[torch.Tensor | None, str | None]:
    try:
        return picture(encoder, data), None
    except Exception as e:  # one bad picture never stops the batch
        return None, str(e) or type(e).__name__


def model_input(encoder: ClipEncoder, pictures: list[torch.Tensor]) -> torch.Tensor:
    """Pictures from :func:`picture` as one batch of model input on the model's device."""
    import torch

    ready = [
        encoder.normalise(p.unsqueeze(0))[0] if p.dtype == torch.uint8 else p.to(encoder.device)
        for p in pictures
    ]
    return torch.stack(ready)


@dataclass
class Encoded:
    """One model batch: the rows that got a vector (in order, without their picture), their
    vectors (unit norm, float32), and ``(row, why)`` for those that could not be decoded."""

    rows: list[dict]
    vectors: np.ndarray
    failures: list[tuple[dict, str]] = field(default_factory=list)


def encode_stream(
    encoder: ClipEncoder,
    rows: Iterable[dict],
    batch_size: int,
    workers: int | None = None,
    picture: str = "bytes",
) -> Iterator[Encoded]:
    """Encode ``rows`` (dicts whose ``picture`` key holds the bytes) in model batches of
    ``batch_size``, the pool decoding up to :data:`AHEAD` batches ahead of the model."""

    set_model_threads(encoder)
    source = iter(rows)
    window: deque[tuple[dict, Future]] = deque()
    with ThreadPoolExecutor(
        workers or prep_workers(encoder), thread_name_prefix="adrag-prep"
    ) as pool:

        def fill() -> None:
            while len(window) < batch_size * (AHEAD + 1):
                row = next(source, None)
                if row is None:
                    return
                data = row.pop(picture)
                window.append((row, pool.submit(_prepared, encoder, data)))

        fill()
        while window:
            batch = [window.popleft() for _ in range(min(batch_size, len(window)))]
            fill()  # the next batches decode while this one is encoded
            kept, tensors, failures = [], [], []
            for row, future in batch:
                tensor, why = future.result()
                if tensor is None:
                    failures.append((row, why or "cannot decode"))
                else:
                    kept.append(row)
                    tensors.append(tensor)
            vectors = (
                encoder.encode_pixels(model_input(encoder, tensors))
                if tensors
                else np.zeros((0, encoder.dim), np.float32)
            )
            yield Encoded(kept, vectors, failures)


def encode_renditions(
    encoder: ClipEncoder,
    renditions: Sequence[bytes],
    batch_size: int = 32,
    workers: int | None = None,
) -> Encoded:
    """Rendition bytes in, vectors out: ``rows`` are ``{"index": i}`` of the renditions that
    got a vector (same order as ``vectors``), ``failures`` the others with the reason."""
    rows = ({"index": i, "bytes": b} for i, b in enumerate(renditions))
    parts = list(encode_stream(encoder, rows, batch_size, workers))
    vectors = [p.vectors for p in parts] or [np.zeros((0, encoder.dim), np.float32)]
    return Encoded(
        [r for p in parts for r in p.rows],
        np.concatenate(vectors),
        [f for p in parts for f in p.failures],
    )


def rows_of(batches: Iterable[pa.RecordBatch]) -> Iterator[dict]:
    """The rows of record batches, one batch in Python at a time."""
    for batch in batches:
        yield from batch.to_pylist()
