"""Labels are not lost to a copy of a photo or to the way a name is written.

An exact copy in another folder is the same image (identity is content): one row, one
vector, shown at the path it had; its labels are those of every path. A change set (the
upload sensor's) gives the same tables as a full scan for copies, names in another case,
and a sidecar that arrived before its photo. Real Delta tables, Milvus Lite and Dagster.
"""

from __future__ import annotations

import json
import shutil

from adrag_app.service.ad_service import milvus_filter
from adrag_assets.images.sync import sync_images
from adrag_assets.index.search import search
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume
from tests.assets.test_images_changeset import snapshot
from tests.support.data import pets_images, read_images
from tests.support.helpers import index_for, run_pipeline, tables_for


def test_a_copy_in_another_folder_keeps_the_original_and_its_labels(settings, instance):
    raw = settings.raw_dir
    (raw / "pets").mkdir()
    bengal = sorted(pets_images().glob("Bengal_*.jpg"))[0]
    others = sorted(pets_images().glob("pug_*.jpg"))[:2]
    for p in [bengal, *others]:
        shutil.copy(p, raw / "pets" / p.name)
    rows = "".join(f"{p.name},{p.name.split('_')[0].lower()}\n" for p in [bengal, *others])
    (raw / "pets" / "labels.csv").write_text("file,breed\n" + rows)
    run_pipeline(settings, instance)

    (raw / "aaa").mkdir()  # first by name: it once took the image's path and labels over
    shutil.copy(bengal, raw / "aaa" / "IMG_0001.jpg")
    meta = run_pipeline(settings, instance)
    assert meta["images"]["added"] == 0 and meta["images"]["updated"] == 0

    index = index_for(settings)
    try:
        hits = search(index, "a bengal cat", k=3, filter=milvus_filter({"breed": "bengal"}))
    finally:
        index.close()
    assert [h.path for h in hits] == [f"raw/pets/{bengal.name}"]
    t = tables_for(settings)
    files = {
        r["path"]: r["image_id"] for r in t.read("volume_files", ["path", "image_id"]).to_pylist()
    }
    assert files["raw/aaa/IMG_0001.jpg"] == files[f"raw/pets/{bengal.name}"]  # both paths kept

    # The original gone, the copy is the image's path (with the labels it has: none).
    (raw / "pets" / bengal.name).unlink()
    run_pipeline(settings, instance)
    row = [
        r
        for r in read_images(t, ["image_id", "path", "labels"]).to_pylist()
        if r["image_id"] == files["raw/aaa/IMG_0001.jpg"]
    ]
    assert [(r["path"], json.loads(r["labels"])) for r in row] == [("raw/aaa/IMG_0001.jpg", {})]


def test_a_change_set_matches_a_full_scan_for_copies_cases_and_early_sidecars(settings, tmp_path):
    pets = sorted(pets_images().glob("*.jpg"))
    raw = settings.raw_dir
    (raw / "a").mkdir()
    shutil.copy(pets[0], raw / "a" / "rex.jpg")
    (raw / "a" / "labels.csv").write_text("file,breed\nrex.jpg,beagle\nLUNA.jpg,husky\n")
    (raw / "b").mkdir()
    (raw / "b" / "Max.jpg.txt").write_text("a caption waiting for its photo")
    volume, tables = open_volume(settings.volume), Tables(settings.tables_dir)
    first = sync_images(volume, tables)
    assert first.images == 1
    assert any("LUNA.jpg" in w and "name no photo" in w for w in first.label_warnings)
    other = Tables(tmp_path / "other")
    shutil.copytree(settings.tables_dir, other.root)

    (raw / "0-copy").mkdir()
    shutil.copy(pets[0], raw / "0-copy" / "rex.jpg")  # the same photo, first by name
    shutil.copy(pets[1], raw / "a" / "luna.jpg")  # the csv row in another case
    changes = ["raw/0-copy/rex.jpg", "raw/a/luna.jpg"]
    stats = sync_images(volume, tables, paths=changes)
    assert stats.scope == "changes"
    assert any("only ignoring case" in w for w in stats.label_warnings)
    sync_images(volume, other)
    assert snapshot(tables) == snapshot(other)
    labels = {
        r["path"]: json.loads(r["labels"])
        for r in read_images(tables, ["path", "labels"]).to_pylist()
    }
    assert labels == {"raw/a/rex.jpg": {"breed": "beagle"}, "raw/a/luna.jpg": {"breed": "husky"}}

    # The photo of a sidecar rejected so far (a caption of nothing), in another case.
    shutil.copy(pets[2], raw / "b" / "Max.JPG")
    stats = sync_images(volume, tables, paths=["raw/b/Max.JPG"])
    assert stats.scope == "full"  # the rejected sidecar beside it may be its own: it is
    sync_images(volume, other)
    assert snapshot(tables) == snapshot(other)
    assert "raw/b/Max.jpg.txt" not in snapshot(tables)["rejected"]
    caption = read_images(tables, ["labels"], "path = 'raw/b/Max.JPG'").column("labels")
    assert json.loads(caption[0].as_py()) == {"caption": "a caption waiting for its photo"}
