"""Labels live in ``photo_labels``, apart from the photos: a relabel commits nothing to
``images`` and re-embeds nothing, and a home from before that table upgrades in place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa

from adrag_assets.embeddings.sync import PROP_LABELS_VERSION
from adrag_assets.index.search import search
from adrag_assets.tables import Tables
from tests.support.data import copy_few_pets, read_images
from tests.support.helpers import index_for, run_pipeline, tables_for

RELABELLED = "pets/beagle_10.jpg"


def vectors(t: Tables) -> dict[str, list[float]]:
    rows = t.read("image_embeddings", ["image_id", "embedding", "embedded_at"]).to_pylist()
    return {r["image_id"]: (r["embedding"], r["embedded_at"]) for r in rows}


def relabel(raw: Path, name: str, breed: str) -> None:
    csv = raw / "labels.csv"
    lines = csv.read_text().splitlines()
    old = Path(name).name
    lines = [f"{old},{breed},dog" if ln.startswith(old + ",") else ln for ln in lines]
    csv.write_text("\n".join(lines) + "\n")


def found(settings, breed: str) -> set[str]:
    """Paths the label filter and the BM25 text find for ``breed``."""
    index = index_for(settings)
    try:
        by_filter = search(index, "a dog", k=3, filter=f'labels["breed"] == "{breed}"')
        by_text = search(index, breed, k=3)
    finally:
        index.close()
    return {h.path for h in by_filter} | {h.path for h in by_text if h.labels.get("breed") == breed}


def test_a_relabel_rewrites_no_photo_and_a_home_from_before_upgrades_in_place(settings, instance):
    copy_few_pets(settings.raw_dir, ("beagle", "pug", "Bengal"))
    run_pipeline(settings, instance)
    t = tables_for(settings)
    images_v, vecs = t.version("images"), vectors(t)

    # A relabel: labels.csv gives one photo a new breed.
    relabel(settings.raw_dir, RELABELLED, "zebracorn")
    labels_v = t.version("photo_labels")
    meta = run_pipeline(settings, instance)
    assert t.version("images") == images_v  # no commit: no rendition read or rewritten
    assert t.version("photo_labels") > labels_v
    assert meta["images"]["updated"] == 1
    emb = meta["image_embeddings"]
    assert (emb["embedded"], emb["relabelled"], emb["images_read"]) == (0, 1, 0)
    assert emb["labels_read"] >= 1
    assert vectors(t) == vecs  # vectors kept, none embedded again
    assert meta["image_index"]["upserted"] == 1
    assert found(settings, "zebracorn") == {f"raw/{RELABELLED}"}
    rows = {r["path"]: r["labels"] for r in read_images(t, ["path", "labels"]).to_pylist()}
    assert json.loads(rows[f"raw/{RELABELLED}"])["breed"] == "zebracorn"

    # A home made before photo_labels, as main's code leaves it: labels in images' own
    # column, no photo_labels table, no labels record beside the vectors. (The same upgrade
    # was run on a home main's code made: see the README.)
    mapping = {
        r["image_id"]: r["labels"]
        for r in t.read("photo_labels", ["image_id", "labels"]).to_pylist()
    }
    t.update_columns(
        "images",
        pa.table({"image_id": list(mapping), "labels": list(mapping.values())}),
        ["image_id"],
        ["labels"],
    )
    shutil.rmtree(t.uri("photo_labels"))
    t.set_properties("image_embeddings", {PROP_LABELS_VERSION: ""})
    images_v, vecs = t.version("images"), vectors(t)

    meta = run_pipeline(settings, instance)
    assert t.version("images") == images_v  # read (its labels column only), not rewritten
    got = t.read("photo_labels", ["image_id", "labels"]).to_pylist()
    assert {r["image_id"]: r["labels"] for r in got} == mapping and len(got) == len(mapping)
    emb = meta["image_embeddings"]
    assert (emb["embedded"], emb["reembedded"], emb["relabelled"]) == (0, 0, 0)
    assert meta["image_index"]["upserted"] == 0
    assert vectors(t) == vecs
    assert found(settings, "zebracorn") == {f"raw/{RELABELLED}"}

    # ... and relabels from then on without touching images.
    relabel(settings.raw_dir, RELABELLED, "unicornbeagle")
    meta = run_pipeline(settings, instance)
    assert t.version("images") == images_v
    assert (meta["image_embeddings"]["embedded"], meta["image_embeddings"]["relabelled"]) == (0, 1)
    assert vectors(t) == vecs
    assert found(settings, "unicornbeagle") == {f"raw/{RELABELLED}"}
    assert found(settings, "zebracorn") == set()
