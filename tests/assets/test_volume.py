"""Scanning the volume, sidecars and labels, and decoding (accept/reject) single files."""

from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image

from adrag_assets.images import decode as dec
from adrag_assets.images.sync import read_photo
from adrag_assets.volume import FileStat, FileTooLarge, NotARegularFile, open_volume
from adrag_assets.volume import files as vol


def png(color=(200, 10, 10), size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_scan_separates_sidecars_and_skips_hidden(tmp_path):
    raw = tmp_path / "raw" / "a" / "b"
    raw.mkdir(parents=True)
    (raw / "rex.jpg").write_bytes(b"x")
    (raw / "rex.jpg.txt").write_text("a dog on a beach")
    (raw / "tom.png").write_bytes(b"x")
    (raw / "tom.json").write_text("{}")
    (raw / "orphan.txt").write_text("no photo")
    (tmp_path / "raw" / "labels.csv").write_text("file,breed\n")
    (raw / ".upload.tmp").write_bytes(b"x")
    (tmp_path / "raw" / ".hidden").mkdir()
    (tmp_path / "raw" / ".hidden" / "x.jpg").write_bytes(b"x")
    photos, sidecars = vol.scan(open_volume(tmp_path))
    assert [p.path for p in photos] == [
        "raw/a/b/orphan.txt",  # not a sidecar: it is checked (and rejected) like any file
        "raw/a/b/rex.jpg",
        "raw/a/b/tom.png",
    ]
    assert [s.path for s in sidecars] == [
        "raw/a/b/rex.jpg.txt",
        "raw/a/b/tom.json",
        "raw/labels.csv",
    ]


def test_labels_from_csv_at_any_depth_and_sidecars(tmp_path):
    raw = tmp_path / "raw"
    (raw / "pets" / "dogs").mkdir(parents=True)
    paths = ["raw/pets/dogs/rex.jpg", "raw/pets/dogs/fido.jpg", "raw/pets/cat.jpg"]
    for p in paths:
        (tmp_path / p).write_bytes(b"x")
    # A shallow csv by bare name, a deeper one by relative path that overrides it.
    (raw / "labels.csv").write_text("file,breed,species\nrex.jpg,beagle,dog\ncat.jpg,bengal,cat\n")
    (raw / "pets" / "labels.csv").write_text("file,breed\ndogs/rex.jpg,basset hound\n")
    (raw / "pets" / "dogs" / "fido.json").write_text(json.dumps({"mood": "happy"}))
    (raw / "pets" / "cat.jpg.txt").write_text("  a cat in the sun \n")
    photos, sidecars = vol.scan(open_volume(tmp_path))
    labels, warnings = vol.read_labels(open_volume(tmp_path), [p.path for p in photos], sidecars)
    assert warnings == []
    assert labels["raw/pets/dogs/rex.jpg"] == {"breed": "basset hound", "species": "dog"}
    assert labels["raw/pets/dogs/fido.jpg"] == {"mood": "happy"}
    assert labels["raw/pets/cat.jpg"] == {
        "breed": "bengal",
        "species": "cat",
        "caption": "a cat in the sun",
    }


def test_decode_accepts_images_and_names_the_reason_for_others():
    data = png()
    d = dec.decode("raw/x.png", data)
    assert (d.format, d.width, d.height) == ("PNG", 8, 6)
    assert len(d.image_id) == 64
    assert dec.decode("raw/y.png", data).image_id == d.image_id  # content is identity

    noisy = io.BytesIO()
    Image.effect_noise((64, 64), 50).save(noisy, "PNG")
    cases = {
        b"": "empty file",
        b"hello": "not an image",
        noisy.getvalue()[: len(noisy.getvalue()) // 2]: "cannot decode",
    }
    for bad, reason in cases.items():
        with pytest.raises(dec.RejectedImage) as e:
            dec.decode("raw/bad.png", bad)
        assert "raw/bad.png" in str(e.value) and reason in str(e.value)


def test_unsupported_format_is_rejected():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PDF")
    with pytest.raises(dec.RejectedImage, match="raw/doc.pdf"):
        dec.decode("raw/doc.pdf", buf.getvalue())


def test_upright_rgb_converts_every_mode_properly():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0  # pixel 0 is transparent: shown on white, not black
    assert dec.upright_rgb(palette).getpixel((0, 0)) == (255, 255, 255)
    assert dec.upright_rgb(palette).getpixel((1, 0)) == (200, 10, 10)
    assert dec.upright_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0)) == (255, 255, 255)
    assert dec.upright_rgb(Image.new("F", (1, 1), 0.5)).getpixel((0, 0)) == (128, 128, 128)
    assert dec.upright_rgb(Image.new("I", (1, 1), 40000)).getpixel((0, 0)) == (156, 156, 156)
    dark16 = Image.new("I;16", (1, 1), 200)  # 16-bit by its mode: dark, not bright
    assert dec.upright_rgb(dark16).getpixel((0, 0)) == (1, 1, 1)
    assert dec.upright_rgb(Image.new("CMYK", (1, 1), (0, 0, 0, 0))).getpixel((0, 0)) == (
        255,
        255,
        255,
    )


def test_reads_refuse_what_is_not_a_regular_file_in_the_volume(tmp_path):
    volume = open_volume(tmp_path / "v")
    raw = tmp_path / "v" / "raw"
    raw.mkdir(parents=True)
    os.mkfifo(raw / "pipe.jpg")  # no writer: a blind read would block forever
    with pytest.raises(NotARegularFile, match="FIFO"):
        volume.read_bytes("raw/pipe.jpg")
    (tmp_path / "secret.png").write_bytes(png())
    (raw / "out.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ValueError, match="outside the volume"):
        volume.read_bytes("raw/out.png")
    (raw / "big.png").write_bytes(b"x" * 100)
    with pytest.raises(FileTooLarge):
        volume.read_bytes("raw/big.png", max_bytes=99)
    assert volume.read_bytes("raw/big.png", max_bytes=100) == b"x" * 100


def test_a_read_that_fails_becomes_a_rejection_naming_the_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "album.jpg").write_bytes(png())
    # Listed as a file, but its parent is a file by the time it is read: a real ENOTDIR.
    st = FileStat("raw/album.jpg/cover.jpg", 10, 1)
    with pytest.raises(dec.RejectedImage, match=r"raw/album.jpg/cover.jpg: cannot read \(Not a"):
        read_photo(open_volume(tmp_path), st)
    assert read_photo(open_volume(tmp_path), FileStat("raw/gone.jpg", 1, 1)) is None


def test_walk_follows_symlinks_only_inside_the_volume(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.png").write_bytes(png())
    (raw / "b.png").symlink_to(raw / "a.png")
    (raw / "c.png").symlink_to(tmp_path.parent)
    entries = {st.path: st for st in open_volume(tmp_path).walk("raw")}
    assert entries["raw/b.png"].problem is None
    assert entries["raw/b.png"].size == (raw / "a.png").stat().st_size
    assert entries["raw/c.png"].problem == "symlink points outside the volume"
