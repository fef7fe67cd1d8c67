"""Camera originals: one reduced-scale decode per photo gives its check, upright size, EXIF facts
and the rendition the model reads; originals stay in the volume unless asked; a home made by
the code before renditions upgrades in place with nothing re-embedded. Real Delta tables, the
tiny real CLIP, and the previous layout built by the previous code itself (from git)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adrag_assets.embeddings.encoder import decode_for_model, load_encoder
from adrag_assets.embeddings.sync import sync_embeddings
from adrag_assets.images import decode as dec
from adrag_assets.images.sync import IngestOptions, sync_images
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume
from tests.support.data import TEST_ENCODER, pets_images

REPO = Path(__file__).resolve().parents[2]
# The last commit whose `images` kept photo bytes and no rendition (this repo's history).
BEFORE_RENDITIONS = "c04fbbde424bcdf9d33709e95f296282f78ba783"
ORIENTATION, MAKE, MODEL, EXIF_IFD, TAKEN = 0x0112, 0x010F, 0x0110, 0x8769, 0x9003


def camera_jpeg(source: Path, size=(2400, 1800), sideways: bool = False) -> bytes:
    """A large JPEG made from a sample photo (upscaled, with noise, as a camera's would be
    busy), with camera EXIF; ``sideways``: stored rotated with an orientation tag."""
    with Image.open(source) as im:
        big = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    pixels = np.asarray(big, np.int16) + rng.integers(-12, 13, (size[1], size[0], 3))
    big = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = "Canon", "EOS R6"
    exif.get_ifd(EXIF_IFD)[TAKEN] = "2024:05:17 09:30:12"
    if sideways:
        big = big.transpose(Image.Transpose.ROTATE_90)  # stored sideways ...
        exif[ORIENTATION] = 6  # ... and tagged to be turned back
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def test_one_decode_gives_size_exif_and_an_upright_rendition():
    src = sorted(pets_images().glob("*.jpg"))[0]
    data = camera_jpeg(src, sideways=True)
    d = dec.decode("raw/cam.jpg", data, rendition_px=512)
    assert (d.width, d.height) == (2400, 1800)  # upright: the tag applied
    assert (d.camera_make, d.camera_model) == ("Canon", "EOS R6")
    assert d.taken_at == datetime(2024, 5, 17, 9, 30, 12)
    with Image.open(io.BytesIO(d.rendition)) as r:
        assert r.format == "JPEG" and r.size == (512, 384)  # upright, long side 512
    assert len(d.rendition) < len(data) * 0.05
    # A small photo's rendition is the file itself: the model sees what it always saw.
    small = src.read_bytes()
    assert dec.decode("raw/small.jpg", small, rendition_px=4096).rendition == small


def test_a_truncated_original_is_still_rejected_at_reduced_scale():
    data = camera_jpeg(sorted(pets_images().glob("*.jpg"))[1])
    with pytest.raises(dec.RejectedImage, match=r"raw/cut\.jpg: cannot decode image"):
        dec.decode("raw/cut.jpg", data[: len(data) // 2], rendition_px=512)


def test_rendition_vectors_match_a_full_decode_s(settings):
    """Why DECODE_VERSION stays: the vector from a rendition is the one a full decode of the
    original gives (cosine >= 0.9999 with the test encoder); closer than the reduced-scale
    decode of the original the model read before renditions."""
    encoder = load_encoder(TEST_ENCODER, "fp32")
    for src in sorted(pets_images().glob("*.jpg"))[:4]:
        data = camera_jpeg(src, size=(2000, 1500))
        rendition = dec.decode("x.jpg", data, 512).rendition
        with Image.open(io.BytesIO(data)) as im:
            full = dec.upright_rgb(im)
        a, b, before = encoder.encode_images(
            [
                full,
                decode_for_model(rendition, encoder.image_size),
                decode_for_model(data, encoder.image_size),
            ]
        )
        assert float(a @ b) >= 0.9999, src.name
        assert float(a @ b) >= float(a @ before) - 1e-6, src.name


def test_originals_stay_in_the_volume_unless_asked(settings):
    src = sorted(pets_images().glob("*.jpg"))
    (settings.raw_dir / "cam.jpg").write_bytes(camera_jpeg(src[0]))
    shutil.copy(src[1], settings.raw_dir / "small.jpg")
    volume = open_volume(settings.volume_uri)
    tables = Tables(settings.tables_dir)
    sync_images(volume, tables, options=IngestOptions(rendition_px=512, decode_workers=2))
    cols = ["path", "bytes", "rendition", "width", "camera_make", "taken_at"]
    rows = {r["path"]: r for r in tables.read("images", cols).to_pylist()}
    assert all(r["bytes"] is None for r in rows.values())
    assert rows["raw/cam.jpg"]["width"] == 2400 and rows["raw/cam.jpg"]["camera_make"] == "Canon"
    assert rows["raw/small.jpg"]["rendition"] == src[1].read_bytes()
    embedded = sync_embeddings(tables, load_encoder(TEST_ENCODER, "fp32"))
    assert embedded.embedded == 2 and embedded.failed == 0

    kept = Tables(settings.home / "kept")
    sync_images(volume, kept, options=IngestOptions(store_originals=True))
    rows = {r["path"]: r["bytes"] for r in kept.read("images", ["path", "bytes"]).to_pylist()}
    assert rows["raw/cam.jpg"] == (settings.raw_dir / "cam.jpg").read_bytes()


def previous_code(into: Path) -> Path:
    """The adrag packages as they were before renditions, from this repo's git history."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE_RENDITIONS, "adrag_assets", "adrag_app"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=120)
    return into


def test_a_home_from_before_renditions_upgrades_in_place(settings, tmp_path):
    """Built by the previous code (bytes in Delta, no rendition column), then ingested by
    this code: old rows keep their vectors, new photos get renditions."""
    old = previous_code(tmp_path / "previous-code")
    src = sorted(pets_images().glob("*.jpg"))
    for p in src[:4]:
        shutil.copy(p, settings.raw_dir / p.name)
    build = (
        "import sys; from adrag_assets.images.sync import sync_images; "
        "from adrag_assets.embeddings.sync import sync_embeddings; "
        "from adrag_assets.embeddings.encoder import load_encoder; "
        "from adrag_assets.tables import Tables; from adrag_assets.volume import open_volume; "
        "t = Tables(sys.argv[2]); sync_images(open_volume(sys.argv[1]), t); "
        f"sync_embeddings(t, load_encoder({TEST_ENCODER!r}, 'fp32'))"
    )
    env = {**os.environ, "PYTHONPATH": str(old)}
    subprocess.run(
        [sys.executable, "-c", build, settings.volume_uri, settings.tables_uri],
        env=env,
        cwd=old,  # ``-c`` puts the working folder first on sys.path
        check=True,
        timeout=300,
    )
    tables = Tables(settings.tables_dir)
    assert "rendition" not in tables.open("images").schema().to_arrow().names
    before = vectors(tables)

    (settings.raw_dir / "cam.jpg").write_bytes(camera_jpeg(src[5]))
    encoder = load_encoder(TEST_ENCODER, "fp32")
    got = sync_images(open_volume(settings.volume_uri), tables)
    assert got.added == 1 and got.unchanged == 4
    stats = sync_embeddings(tables, encoder)
    assert stats.embedded == 1 and stats.reembedded == 0 and stats.stale == 0
    after = vectors(tables)
    for path, vec in before.items():
        np.testing.assert_array_equal(after[path], vec, err_msg=path)
    rows = {r["path"]: r for r in tables.read("images", ["path", "bytes", "rendition"]).to_pylist()}
    assert rows["raw/cam.jpg"]["bytes"] is None and rows["raw/cam.jpg"]["rendition"]
    old = rows[f"raw/{src[0].name}"]
    assert old["bytes"] == src[0].read_bytes() and old["rendition"] is None
    # A model switch re-embeds old rows from their stored bytes, new ones from renditions.
    other = sync_embeddings(tables, load_encoder(TEST_ENCODER + "@7", "fp32"))
    assert other.embedded == 5 and other.failed == 0


def vectors(tables: Tables) -> dict[str, np.ndarray]:
    rows = tables.query("image_embeddings", "SELECT path, embedding FROM image_embeddings")
    return {r["path"]: np.asarray(r["embedding"], np.float32) for r in rows.read_all().to_pylist()}


def test_the_images_asset_follows_the_settings(settings, instance, monkeypatch):
    """ADRAG_STORE_ORIGINALS and ADRAG_RENDITION_PX reach the Dagster asset; its thumbnails
    come from the renditions."""
    import dagster as dg

    from adrag_assets.defs.photos import images
    from adrag_assets.defs.resources import resources_from_settings

    monkeypatch.setenv("ADRAG_STORE_ORIGINALS", "on")
    monkeypatch.setenv("ADRAG_RENDITION_PX", "128")
    src = sorted(pets_images().glob("*.jpg"))[0]
    (settings.raw_dir / "cam.jpg").write_bytes(camera_jpeg(src))
    run = dg.materialize([images], resources=resources_from_settings(settings), instance=instance)
    assert run.success
    row = Tables(settings.tables_dir).read("images", ["bytes", "rendition"]).to_pylist()[0]
    assert row["bytes"] == (settings.raw_dir / "cam.jpg").read_bytes()
    with Image.open(io.BytesIO(row["rendition"])) as r:
        assert max(r.size) == 128
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert "data:image/jpeg;base64," in meta["sample"].value
