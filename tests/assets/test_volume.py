"""Scanning the volume, sidecars and labels, and decoding (accept/reject) single files."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from adrag_assets.images import decode as dec
from adrag_assets.volume import files as vol
from adrag_assets.volume import open_volume


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
    assert sidecars == ["raw/a/b/rex.jpg.txt", "raw/a/b/tom.json", "raw/labels.csv"]


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
    labels = vol.read_labels(open_volume(tmp_path), [p.path for p in photos], sidecars)
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
