"""A change-set sync (only the paths the upload sensor saw change) against a full scan: same
tables, with only the named paths read."""

from __future__ import annotations

import shutil

from adrag_assets.images.sync import sync_images
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume
from tests.support.data import PETS, pets_images, read_images


def snapshot(tables: Tables) -> dict[str, list]:
    return {
        "images": sorted(
            tuple(r.values())
            for r in read_images(tables, ["image_id", "path", "labels"]).to_pylist()
        ),
        "volume_files": sorted(
            tuple(r.values()) for r in tables.read("volume_files", ["path", "image_id"]).to_pylist()
        ),
        "rejected": sorted(r["path"] for r in tables.read("rejected_images", ["path"]).to_pylist()),
    }


def test_change_set_has_the_outcome_of_a_full_scan_and_reads_only_its_paths(settings, tmp_path):
    pets = sorted(pets_images().glob("*.jpg"))
    raw = settings.raw_dir
    shutil.copy(PETS / "labels.csv", raw / "labels.csv")  # rows by bare file name
    (raw / "a").mkdir()
    (raw / "x").mkdir()
    for p in pets[:4]:
        shutil.copy(p, raw / "a" / p.name)
    named = pets[10]  # listed in labels.csv; for now only deeper down
    shutil.copy(named, raw / "x" / named.name)
    shutil.copy(pets[5], raw / "a" / "rex.png")
    (raw / "a" / "rex.txt").write_text("the stem caption")  # labels rex.png, for now
    shutil.copy(pets[6], raw / "a" / "gone.jpg")
    shutil.copy(pets[6], raw / "a" / "zz_dup.jpg")  # same content: gone.jpg's image

    volume, tables = open_volume(settings.volume), Tables(settings.tables_dir)
    first = sync_images(volume, tables)
    assert first.scope == "full" and first.images == 7
    other = Tables(tmp_path / "other")
    shutil.copytree(settings.tables_dir, other.root)

    # One of each kind of change; none of them to a sidecar.
    changed = {
        "raw/a/rex.jpg": pets[7],  # new, and first by name: the stem caption moves to it
        f"raw/{named.name}": pets[11],  # the exact path of a csv row: its labels move here
        "raw/new/fresh.jpg": pets[12],  # new folder
        f"raw/a/{pets[0].name}": pets[13],  # same name, new content
    }
    for path, src in changed.items():
        (settings.volume / path).parent.mkdir(exist_ok=True)
        shutil.copy(src, settings.volume / path)
    (raw / "a" / "broken.jpg").write_bytes(pets[8].read_bytes()[:500])
    (raw / "a" / "gone.jpg").unlink()  # its image now lives at zz_dup.jpg
    (raw / "a" / pets[1].name).unlink()  # its image is gone
    paths = [*changed, "raw/a/broken.jpg", "raw/a/gone.jpg", f"raw/a/{pets[1].name}"]

    stats = sync_images(volume, tables, paths=paths)
    assert stats.scope == "changes" and stats.paths == 7
    assert stats.files_read == 5  # the files present among the paths, nothing else
    assert (stats.added, stats.deleted, stats.newly_rejected) == (4, 2, 1)
    full = sync_images(volume, other)
    assert full.scope == "full" and (full.added, full.deleted) == (4, 2)
    assert snapshot(tables) == snapshot(other)
    labels = {r["path"]: r["labels"] for r in read_images(tables, ["path", "labels"]).to_pylist()}
    assert "the stem caption" in labels["raw/a/rex.jpg"]
    assert "the stem caption" not in labels["raw/a/rex.png"]
    assert labels[f"raw/x/{named.name}"] == "{}"
    assert "raw/a/zz_dup.jpg" in labels
    # Nothing left for a full scan to do after the change set.
    again = sync_images(volume, tables)
    assert (again.files_read, again.added, again.updated, again.deleted) == (0, 0, 0, 0)


def test_a_sidecar_or_too_many_paths_make_a_full_scan(settings):
    shutil.copy(sorted(pets_images().glob("*.jpg"))[0], settings.raw_dir / "a.jpg")
    (settings.raw_dir / "a.txt").write_text("a caption")
    volume, tables = open_volume(settings.volume), Tables(settings.tables_dir)
    stats = sync_images(volume, tables, paths=["raw/a.txt"])
    assert stats.scope == "full" and stats.images == 1
    assert "a caption" in read_images(tables, ["labels"]).column("labels")[0].as_py()
    many = [f"raw/{i}.jpg" for i in range(1001)]
    assert sync_images(volume, tables, paths=many).scope == "full"
