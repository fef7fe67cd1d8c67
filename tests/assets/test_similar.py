"""Search by photo, near duplicates and diversity, on a few pet photos and one re-export.

The offline encoder (random weights, NOT semantic) still gives a photo's own vector back
exactly, and a re-export of a photo a vector almost equal to the original's: that is all
these tests rely on.
"""

from __future__ import annotations

import io
import json
import shutil

import dagster as dg
import pytest
from click.testing import CliRunner
from PIL import Image

from adrag_app.cli import main
from adrag_assets.defs.duplicates import near_duplicates
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.index.search import search, search_collection
from adrag_assets.index.similar import similar_to_file, similar_to_image
from adrag_assets.settings import load_settings
from tests.support.data import PETS, REPO, TEST_ENCODER, pets_images
from tests.support.helpers import index_for, run_pipeline, tables_for

BREEDS = ("beagle", "pug", "Bengal")  # 24 photos: two species to filter on
ORIGINAL = "beagle_107.jpg"
COPY = "reexported/beagle_107_web.jpg"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A few pets, plus ORIGINAL re-exported smaller at another JPEG quality (other bytes,
    another image_id, the same shot, the same labels), indexed; and the near_duplicates asset
    materialized. Built once for the module's tests: they only read it."""
    home = tmp_path_factory.mktemp("similar") / "home"
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for k, v in {
            "ADRAG_HOME": str(home),
            "ADRAG_ENCODER": TEST_ENCODER,
            "ADRAG_PRECISION": "fp32",
            "DAGSTER_HOME": str(home / "dagster"),
        }.items():
            mp.setenv(k, v)
        for k in ("ADRAG_VOLUME", "ADRAG_MILVUS_URI", "ADRAG_DIVERSITY"):
            mp.delenv(k, raising=False)
        settings = load_settings()
        raw = settings.raw_dir / "pets"
        raw.mkdir(parents=True)
        for breed in BREEDS:
            for p in sorted(pets_images().glob(f"{breed}_*.jpg")):
                shutil.copy(p, raw / p.name)
        shutil.copy(PETS / "labels.csv", settings.raw_dir / "labels.csv")
        with Image.open(raw / ORIGINAL) as im:
            small = im.convert("RGB").resize((im.width * 9 // 10, im.height * 9 // 10))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=70)
        (raw / COPY).parent.mkdir()
        (raw / COPY).write_bytes(buf.getvalue())
        (raw / f"{COPY}.json").write_text('{"breed": "beagle", "species": "dog"}')
        run_pipeline(settings, instance)
        result = dg.materialize(
            [near_duplicates], resources=resources_from_settings(settings), instance=instance
        )
        assert result.success
        index = index_for(settings)
        yield settings, index, result.asset_materializations_for_node("near_duplicates")[0]
        index.close()


def ids_by_name(index) -> dict[str, str]:
    name = index.live_collection()
    rows = index.client.query(name, filter="", output_fields=["path"], limit=1000)
    return {r["path"].rsplit("pets/", 1)[-1]: r["image_id"] for r in rows}


def test_reexport_is_a_near_duplicate_pair_and_diversity_keeps_it_out(library):
    settings, index, mat = library
    ids = ids_by_name(index)
    original, copy = ids[ORIGINAL], ids[COPY]
    assert original != copy  # other bytes: two images as far as ingest is concerned

    meta = {k: v.value for k, v in mat.metadata.items()}
    found = meta["groups_json"]
    pairs = {(p["a"], p["b"]): p["score"] for p in found["pairs"]}
    assert tuple(sorted((original, copy))) in pairs
    assert pairs[tuple(sorted((original, copy)))] >= meta["threshold"] == 0.999
    groups = [{m["image_id"] for m in g} for g in found["groups"]]
    assert {original, copy} in groups
    assert meta["pairs"] == len(pairs) and meta["groups"] == len(groups)
    assert "2 |" in meta["summary"] and "beagle_107" in meta["examples"]

    # The original's own file: it comes first (its stored vector), the copy is dropped.
    on = similar_to_file(index, settings.raw_dir / "pets" / ORIGINAL, k=5, settings=settings)
    assert on[0].image_id == original and on[0].score == pytest.approx(1.0, abs=1e-4)
    assert copy not in [h.image_id for h in on] and len(on) == 5
    off = settings.model_copy(update={"diversity": False})
    plain = similar_to_file(index, settings.raw_dir / "pets" / ORIGINAL, k=5, settings=off)
    assert [h.image_id for h in plain[:2]] == [original, copy]
    assert [h.image_id for h in plain if h.image_id != copy] == [h.image_id for h in on][:4]

    # Text search shares the rule: the beagle top-k holds the original, never both.
    hits = [h.image_id for h in search(index, "a beagle", k=10, settings=settings)]
    assert original in hits and copy not in hits
    assert {original, copy} <= {h.image_id for h in search(index, "a beagle", k=10, settings=off)}


def test_more_like_a_photo_ranks_by_its_vector_excludes_it_and_honours_filters(library):
    settings, index, _ = library
    off = settings.model_copy(update={"diversity": False})
    ids = ids_by_name(index)
    pug = ids["pug_112.jpg"]
    name = index.live_collection()
    vector = index.vectors(name, [pug])[pug]
    expected = [h.image_id for h in index.search_dense(name, vector, 7)][1:]  # itself first

    like = similar_to_image(index, pug, k=6, settings=off)
    assert [h.image_id for h in like] == expected
    assert pug not in [h.image_id for h in like]
    assert [h.score for h in like] == sorted((h.score for h in like), reverse=True)

    cats = similar_to_image(index, pug, k=4, filter='labels["species"] == "cat"', settings=off)
    assert len(cats) == 4 and {h.labels["species"] for h in cats} == {"cat"}

    # The CLI, in-process: --like with --label, --json like the text search's.
    runner = CliRunner()
    out = runner.invoke(
        main, ["search", "--like", pug, "--label", "species=cat", "-k", "4", "--json"]
    )
    assert out.exit_code == 0, out.output
    listed = json.loads(out.stdout)
    assert [h["image_id"] for h in listed] == [h.image_id for h in cats]  # diversity: no pairs
    assert set(listed[0]) == {"image_id", "path", "score"}
    text = runner.invoke(main, ["search", "--image", str(settings.raw_dir / "pets" / ORIGINAL)])
    assert text.exit_code == 0 and text.stdout.splitlines()[0].endswith(ids[ORIGINAL][:12])
    assert search_collection  # the shared ranking stays importable beside the new modules


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "a dog", "--like", "abc"], "exactly one of QUERY"),
        (["search"], "exactly one of QUERY"),
        (["search", "--like", "x", "--label", "nokey"], "is not KEY=VALUE"),
    ],
)
def test_search_usage_errors_are_one_line(env, args, message):
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr


def test_a_bad_image_file_is_one_error_naming_it(env, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"holiday notes, saved with the wrong name")
    out = CliRunner().invoke(main, ["search", "--image", str(bad)])
    assert out.exit_code == 2
    assert out.stderr.strip().splitlines() == [
        f"error: --image {bad}: not an image (unrecognised content)"
    ]
    missing = CliRunner().invoke(main, ["search", "--image", str(tmp_path / "gone.png")])
    assert missing.exit_code == 2 and "gone.png: no such photo file" in missing.stderr
    assert load_settings().diversity  # on by default


def test_archiving_a_duplicate_takes_it_out_of_search_and_undo_brings_it_back(library):
    settings, index, _ = library
    off = settings.model_copy(update={"diversity": False})  # both would show without review
    ids = ids_by_name(index)
    original, copy = ids[ORIGINAL], ids[COPY]
    runner = CliRunner()
    listed = runner.invoke(main, ["duplicates", "--json"])
    assert listed.exit_code == 0, listed.output
    groups = [{p["image_id"] for p in g} for g in json.loads(listed.stdout)["groups"]]
    assert {original, copy} in groups
    assert {original, copy} <= {h.image_id for h in search(index, "a beagle", k=10, settings=off)}
    try:
        out = runner.invoke(
            main, ["archive", f"raw/pets/{COPY}"], env={"ADRAG_APP_USER": "ana@example.com"}
        )
        assert out.exit_code == 0 and out.stdout.strip() == f"archived {copy}", out.output
        hits = [h.image_id for h in search(index, "a beagle", k=10, settings=off)]
        # Filtered inside Milvus: still ten photos, the original among them, the copy not.
        assert len(hits) == 10 and original in hits and copy not in hits
        assert copy not in [h.image_id for h in similar_to_image(index, original, 5, "", off)]
        text = runner.invoke(main, ["duplicates"])
        assert f"{copy}  raw/pets/{COPY}  [archive by ana@example.com]" in text.stdout
        rows = tables_for(settings).read("photo_reviews", ["image_id", "action", "user", "at"])
        last = max(rows.to_pylist(), key=lambda r: r["at"])
        assert (last["image_id"], last["action"], last["user"]) == (
            copy,
            "archive",
            "ana@example.com",
        )
    finally:
        undo = runner.invoke(main, ["archive", "--undo", copy])
    assert undo.exit_code == 0 and undo.stdout.strip() == f"restored {copy}", undo.output
    assert copy in {h.image_id for h in search(index, "a beagle", k=10, settings=off)}
    unknown = runner.invoke(main, ["archive", "raw/pets/nobody.jpg"])
    assert unknown.exit_code == 1 and "no photo in the library" in unknown.stderr


def test_the_apps_duplicates_tab_archives_and_restores(library, monkeypatch):
    from streamlit.testing.v1 import AppTest

    settings, index, _ = library
    monkeypatch.setenv("ADRAG_APP_USER", "lea@example.com")
    monkeypatch.setenv("ADRAG_TRACING", "off")
    ids = ids_by_name(index)
    copy = ids[COPY]
    off = settings.model_copy(update={"diversity": False})
    at = AppTest.from_file(str(REPO / "adrag_app" / "ui" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs][-1] == "Duplicates"
    assert not [b for b in at.button if (b.key or "").startswith("dup-")]  # behind the toggle
    at.toggle(key="review_duplicates").set_value(True).run()
    assert not at.exception, at.exception
    at.button(key=f"dup-archive-{copy}").click().run()
    try:
        assert not at.exception, at.exception
        assert copy not in {h.image_id for h in search(index, "a beagle", k=10, settings=off)}
        rows = tables_for(settings).read("photo_reviews", ["image_id", "action", "user", "at"])
        last = max(rows.to_pylist(), key=lambda r: r["at"])
        assert (last["image_id"], last["action"], last["user"]) == (
            copy,
            "archive",
            "lea@example.com",
        )
        at.button(key=f"dup-restore-{copy}").click().run()  # the undo shown in its place
    finally:
        CliRunner().invoke(main, ["archive", "--undo", copy])
    assert not at.exception, at.exception
    assert f"dup-archive-{copy}" in {b.key for b in at.button}
    assert copy in {h.image_id for h in search(index, "a beagle", k=10, settings=off)}
