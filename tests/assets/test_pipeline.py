"""The asset graph end to end on the real pet photos: Delta tables, tiny CLIP, Milvus Lite."""

from __future__ import annotations

import io
import json
import shutil

import pyarrow as pa
from PIL import Image

from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.index.milvus import PROP_SYNCED_VERSION
from adrag_assets.index.search import search
from tests.support.data import TEST_ENCODER, read_images
from tests.support.helpers import index_for, run_pipeline, tables_for

ENCODER_ID = EncoderSpec.parse(TEST_ENCODER).encoder_id


def reencoded(src, quality: int = 80) -> bytes:
    """Same picture, different bytes (so a different image_id)."""
    buf = io.BytesIO()
    Image.open(src).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_ingest_all_pets(pets, instance):
    meta = run_pipeline(pets, instance)
    assert meta["images"]["added"] == 296
    assert meta["images"]["dagster/row_count"] == 296
    assert meta["rejected_images"]["dagster/row_count"] == 0
    assert meta["image_embeddings"]["embedded"] == 296
    assert meta["image_embeddings"]["encoder_id"] == ENCODER_ID
    assert "NOT semantic" in meta["image_embeddings"]["encoder"]
    assert meta["image_index"]["dagster/row_count"] == 296
    assert meta["image_index"]["mode"] == "rebuild"

    t = tables_for(pets)
    rows = {
        r["path"]: r for r in read_images(t, ["image_id", "path", "labels", "width"]).to_pylist()
    }
    beagle = rows["raw/pets/beagle_10.jpg"]
    assert json.loads(beagle["labels"]) == {"breed": "beagle", "species": "dog"}
    assert beagle["width"] > 0
    data = (pets.volume / "raw/pets/beagle_10.jpg").read_bytes()
    import hashlib

    assert beagle["image_id"] == hashlib.sha256(data).hexdigest()
    species = [json.loads(r["labels"])["species"] for r in rows.values()]
    assert set(species) == {"cat", "dog"}

    # The index holds exactly the table's vectors, and search answers with real files.
    index = index_for(pets)
    table = t.read("image_embeddings", ["image_id", "embedding"], f"encoder_id = '{ENCODER_ID}'")
    ids, matrix = table.column("image_id").to_pylist(), table.column("embedding").to_pylist()
    assert index.ids(index.live_collection()) == set(ids)
    stored = index.vectors(index.live_collection(), ids[:3])
    for i, vec in zip(ids[:3], matrix[:3], strict=True):
        assert abs(float(sum(a * b for a, b in zip(stored[i], vec, strict=True))) - 1.0) < 1e-4
    hits = search(index, "a beagle on a lawn", k=3)
    assert len(hits) == 3
    for h in hits:
        assert (pets.volume / h.path).is_file()
        assert h.image_id in rows[h.path]["image_id"]
    assert len({h.image_id for h in hits}) == 3


def test_add_change_delete_touch_only_those_rows(pets, instance):
    run_pipeline(pets, instance)
    t, index = tables_for(pets), index_for(pets)
    before = {r["path"]: r["image_id"] for r in t.read("images", ["path", "image_id"]).to_pylist()}
    raw = pets.raw_dir / "pets"

    (pets.raw_dir / "new").mkdir()
    (pets.raw_dir / "new" / "fresh_beagle.jpg").write_bytes(reencoded(raw / "beagle_10.jpg"))
    pug, boxer, bengal = (sorted(raw.glob(f"{b}_*.jpg"))[0] for b in ("pug", "boxer", "Bengal"))
    pug.write_bytes(reencoded(pug, quality=60))  # changed
    boxer.unlink()  # deleted
    shutil.copy(bengal, pets.raw_dir / "new" / "bengal_copy.jpg")  # duplicate content

    meta = run_pipeline(pets, instance)
    assert meta["images"]["files_read"] == 3  # new, changed, duplicate: not the 293 others
    assert meta["images"]["added"] == 2  # the new photo and the changed one's new content
    assert meta["images"]["deleted"] == 2  # the changed one's old content, the deleted photo
    assert meta["images"]["updated"] == 0  # the Bengal keeps its path and labels
    assert meta["images"]["dagster/row_count"] == 296
    emb = meta["image_embeddings"]
    assert (emb["embedded"], emb["updated"], emb["deleted"]) == (2, 0, 2)
    idx = meta["image_index"]
    assert (idx["mode"], idx["upserted"], idx["deleted"]) == ("incremental", 2, 2)
    assert idx["dagster/row_count"] == 296

    after = {r["path"]: r["image_id"] for r in t.read("images", ["path", "image_id"]).to_pylist()}
    assert f"raw/pets/{boxer.name}" not in after
    assert after[f"raw/pets/{pug.name}"] != before[f"raw/pets/{pug.name}"]
    assert "raw/new/fresh_beagle.jpg" in after
    # One image for both paths: the copy (first by name) does not take the original's path,
    # nor its labels (the copy sits outside labels.csv's reach by name).
    assert f"raw/pets/{bengal.name}" in after and "raw/new/bengal_copy.jpg" not in after
    files = {
        r["path"]: r["image_id"] for r in t.read("volume_files", ["path", "image_id"]).to_pylist()
    }
    assert files["raw/new/bengal_copy.jpg"] == files[f"raw/pets/{bengal.name}"]
    assert set(after.values()) == index.ids(index.live_collection())
    labels = {r["path"]: r["labels"] for r in read_images(t, ["path", "labels"]).to_pylist()}
    assert json.loads(labels[f"raw/pets/{bengal.name}"])["breed"] == "bengal"


def test_rerun_without_changes_embeds_nothing(pets, instance):
    first = run_pipeline(pets, instance)
    second = run_pipeline(pets, instance)
    assert second["images"]["files_read"] == 0
    assert second["images"]["unchanged"] == 296
    assert second["image_embeddings"]["embedded"] == 0
    assert second["image_index"]["mode"] == "noop"
    assert second["image_embeddings"]["delta_version"] == first["image_embeddings"]["delta_version"]
    assert tables_for(pets).count("image_embeddings") == 296


def test_bad_files_are_rejected_and_the_run_goes_on(pets, instance):
    raw = pets.raw_dir
    good = (raw / "pets" / "beagle_10.jpg").read_bytes()
    (raw / "broken").mkdir()
    (raw / "broken" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (raw / "broken" / "empty.jpg").write_bytes(b"")
    (raw / "broken" / "notes.jpg").write_text("this is not a photo")
    (raw / "broken" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    meta = run_pipeline(pets, instance)
    assert meta["images"]["dagster/row_count"] == 296
    assert meta["rejected_images"]["dagster/row_count"] == 4
    reasons = {
        r["path"]: r["reason"]
        for r in tables_for(pets).read("rejected_images", ["path", "reason"]).to_pylist()
    }
    assert "empty file" in reasons["raw/broken/empty.jpg"]
    assert "not an image" in reasons["raw/broken/notes.jpg"]
    assert "raw/broken/truncated.jpg" in reasons["raw/broken/truncated.jpg"]
    assert "cannot decode" in reasons["raw/broken/truncated.jpg"]
    assert "raw/broken/garbage.png" in reasons

    # Fixing a rejected file brings it in; deleting one drops it from the list.
    (raw / "broken" / "truncated.jpg").write_bytes(reencoded(raw / "pets" / "beagle_10.jpg", 50))
    (raw / "broken" / "empty.jpg").unlink()
    meta = run_pipeline(pets, instance)
    assert meta["rejected_images"]["dagster/row_count"] == 2
    assert meta["images"]["added"] == 1


def test_rerun_after_partial_writes_leaves_the_same_rows(pets, instance):
    """A crash between writes (simulated by undoing the later ones) is healed by a re-run."""
    run_pipeline(pets, instance)
    t, index = tables_for(pets), index_for(pets)
    name = index.live_collection()
    # Crash after the images merge but before the file manifest was written:
    t.delete_keys("volume_files", "path", ["raw/pets/beagle_10.jpg", "raw/pets/beagle_107.jpg"])
    # Crash after embedding but before the index sync recorded its version:
    index.set_properties(name, **{PROP_SYNCED_VERSION: "1"})
    # ... and an index that lost rows the replayed feed does not bring back:
    ids = sorted(index.ids(name))
    feed = t.open("image_embeddings").load_cdf(starting_version=2, columns=["image_id"])
    replayed = set(pa.RecordBatchReader.from_stream(feed).read_all()["image_id"].to_pylist())
    index.delete(name, [i for i in ids if i not in replayed][:5])
    index.close()
    meta = run_pipeline(pets, instance)
    assert meta["image_index"]["mode"] == "repair"
    assert meta["images"]["files_read"] == 2
    assert meta["images"]["added"] == 0
    assert meta["image_embeddings"]["embedded"] == 0
    assert t.count("images") == 296 and t.count("volume_files") == 296
    assert t.count("image_embeddings") == 296
    assert index_for(pets).ids(name) == set(ids)


def test_encoder_switch_fills_a_new_collection_then_moves_the_alias(pets, instance, monkeypatch):
    from adrag_assets.settings import load_settings

    first = run_pipeline(pets, instance)
    old = first["image_index"]["collection"]
    monkeypatch.setenv("ADRAG_ENCODER", "random:adrag-tiny@5")
    # The switch's mechanics, not its quality: two random encoders' P@3 differ by chance, and
    # the quality gate (tests/assets/test_quality_gate.py) would rightly keep the worse one off.
    monkeypatch.setenv("ADRAG_EVAL_MARGIN", "100")
    switched = load_settings()
    meta = run_pipeline(switched, instance)
    assert meta["image_embeddings"]["embedded"] == 296  # every image, for the new encoder
    assert meta["image_embeddings"]["encoder_id"] == "random:adrag-tiny@5"
    new = meta["image_index"]["collection"]
    assert new != old and meta["image_index"]["live_collection"] == new
    assert meta["image_index"]["dropped_collections"] == [old]
    index = index_for(switched)
    assert index.collections() == [new] and index.count(new) == 296
    # Search now encodes queries with the encoder that built the live collection.
    assert len(search(index, "a beagle", k=3)) == 3
    # The table keeps both encoders' vectors, each marked with its encoder id.
    assert tables_for(switched).count("image_embeddings") == 592


def test_old_collection_kept_when_configured(pets, instance, monkeypatch):
    from adrag_assets.settings import load_settings

    run_pipeline(pets, instance)
    monkeypatch.setenv("ADRAG_ENCODER", "random:adrag-tiny@6")
    monkeypatch.setenv("ADRAG_KEEP_OLD_COLLECTIONS", "1")
    switched = load_settings()
    meta = run_pipeline(switched, instance)
    assert meta["image_index"]["dropped_collections"] == []
    assert len(index_for(switched).collections()) == 2
