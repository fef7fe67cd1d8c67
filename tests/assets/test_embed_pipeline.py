"""Renditions to vectors: the decode pool runs ahead of the model within a bound, the tensor
(GPU) path gives the model what Pillow's does (run here on the CPU), fp16 works, and the
images step's decode pool works ahead within a bound too."""

from __future__ import annotations

import io
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from adrag_assets.embeddings import pipeline
from adrag_assets.embeddings.encoder import ClipEncoder, decode_for_model, load_encoder
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.images import sync as images_sync
from adrag_assets.images.decode import decode
from adrag_assets.volume import FileStat
from tests.support.data import TEST_ENCODER, pets_images


@pytest.fixture(scope="module")
def renditions() -> list[bytes]:
    photos = sorted(pets_images().glob("*.jpg"))[:6]
    out = [decode(p.name, p.read_bytes()).rendition for p in photos]
    # A camera-sized photo (made here) whose rendition is a scaled-down JPEG, and a PNG.
    big = Image.open(io.BytesIO(out[0])).convert("RGB").resize((1600, 1200))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    png = io.BytesIO()
    Image.open(io.BytesIO(out[1])).save(png, "PNG")
    return [*out, decode("big.jpg", buf.getvalue()).rendition, png.getvalue()]


def _reference(encoder: ClipEncoder, data: list[bytes]) -> np.ndarray:
    return encoder.encode_images([decode_for_model(d, encoder.image_size) for d in data])


def test_renditions_in_vectors_out_with_failures_named(renditions):
    encoder = load_encoder(TEST_ENCODER)
    broken = renditions[0][: len(renditions[0]) // 3]
    got = pipeline.encode_renditions(encoder, [*renditions, broken, b"not an image"], 4)
    assert [r["index"] for r in got.rows] == list(range(len(renditions)))
    assert [r["index"] for r, _ in got.failures] == [len(renditions), len(renditions) + 1]
    assert all(why for _, why in got.failures)
    # Split preprocessing (Pillow in the pool, scaling in the model's thread) is the same
    # preprocessing: the vectors are the one-at-a-time path's.
    cos = np.sum(got.vectors * _reference(encoder, renditions), axis=1)
    assert cos.min() > 0.99999
    assert np.allclose(np.linalg.norm(got.vectors, axis=1), 1, atol=1e-3)


def test_the_pool_decodes_at_most_a_bounded_window_ahead(renditions):
    encoder = load_encoder(TEST_ENCODER)
    pulled = 0

    def rows():
        nonlocal pulled
        for k in itertools.count():
            pulled += 1
            yield {"k": k, "bytes": renditions[k % len(renditions)]}

    batch = 4
    stream = pipeline.encode_stream(encoder, rows(), batch, workers=2)
    first = next(stream)
    assert [r["k"] for r in first.rows] == [0, 1, 2, 3]
    # At most AHEAD more batches than the one encoded were read and decoded.
    assert batch < pulled <= batch * (pipeline.AHEAD + 2)
    second = next(stream)
    assert [r["k"] for r in second.rows] == [4, 5, 6, 7]
    assert pulled <= batch * (pipeline.AHEAD + 3)
    stream.close()


def test_the_device_decode_path_gives_the_model_what_pillow_does(renditions):
    """``ADRAG_DEVICE=cuda`` decodes JPEGs with torchvision on the GPU; here the same code runs
    with device="cpu" (torchvision's CPU decoder); the PNG takes Pillow's path."""
    spec = EncoderSpec.parse(TEST_ENCODER)
    on_device = ClipEncoder(spec, "fp32", "cpu", decode_on_device=True)
    plain = load_encoder(TEST_ENCODER, "fp32")
    assert on_device.decode_on_device and not plain.decode_on_device
    jpeg = renditions[-2]
    picture = pipeline.tensor_picture(on_device, jpeg)
    assert picture is not None and picture.dtype == torch.uint8
    assert tuple(picture.shape) == (3, on_device.image_size, on_device.image_size)
    assert pipeline.tensor_picture(on_device, renditions[-1]) is None  # PNG: Pillow's path
    got = pipeline.encode_renditions(on_device, renditions, 4).vectors
    cos = np.sum(got * _reference(plain, renditions), axis=1)
    # A 64-pixel model input from a full decode vs Pillow's reduced-scale one.
    assert cos.min() > 0.995


def test_a_jpeg_stored_sideways_takes_pillows_path_upright():
    """nvjpeg ignores EXIF orientation: such a JPEG is decoded by Pillow, upright."""
    spec = EncoderSpec.parse(TEST_ENCODER)
    on_device = ClipEncoder(spec, "fp32", "cpu", decode_on_device=True)
    # Stored 200 high x 100 wide, bottom half light, tagged "rotate 90° CW to show" (6):
    # upright, the left half is light.
    stored = np.zeros((200, 100, 3), np.uint8)
    stored[100:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", exif=exif, quality=95)
    assert pipeline.tensor_picture(on_device, buf.getvalue()) is None
    picture = pipeline.picture(on_device, buf.getvalue())  # model input: normalised
    assert picture.shape[1] == picture.shape[2]  # cropped square
    half = picture.shape[2] // 2
    assert picture[:, :, :half].mean() > 1 > -1 > picture[:, :, half:].mean()
    # Without the tag the device path takes it, as stored (light at the bottom).
    plain = io.BytesIO()
    Image.fromarray(stored).save(plain, "JPEG", quality=95)
    upright = pipeline.tensor_picture(on_device, plain.getvalue()).float()
    assert upright[:, half:, :].mean() > 200 > 50 > upright[:, :half, :].mean()


def test_fp16_runs_and_matches_fp32(renditions):
    half = load_encoder(TEST_ENCODER, "fp16")
    full = load_encoder(TEST_ENCODER, "fp32")
    a = pipeline.encode_renditions(half, renditions[:4]).vectors
    b = pipeline.encode_renditions(full, renditions[:4]).vectors
    assert a.dtype == np.float32
    assert np.sum(a * b, axis=1).min() > 0.99


def test_the_images_pool_works_ahead_within_a_chunk():
    files = [FileStat(f"raw/{k}.jpg", 1, 0) for k in range(3 * images_sync.CHUNK)]
    started = []
    lock = threading.Lock()

    def look(st: FileStat) -> str:
        with lock:
            started.append(st.path)
        return st.path

    with ThreadPoolExecutor(2) as pool:
        looked = images_sync._ahead(pool, look, files, images_sync.IngestOptions())
        first = list(itertools.islice(looked, 10))
        assert first == [f.path for f in files[:10]]  # in order
        pool.submit(lambda: None).result()  # the pool has taken what it was given
        assert 10 < len(started) <= 10 + images_sync.CHUNK
        assert [*first, *looked] == [f.path for f in files]
