"""The image-gen service on the real pet photos: tiny CLIP, Milvus Lite, Dagster, MLflow.

The index is built once for the module (the pipeline is the slow part); every test reads it
and writes creatives into the module's volume, so tests compare before/after rather than assume
an empty ads/ folder. Creatives use the offline compositor: nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import click
import dagster as dg
import mlflow
import pytest
from click.testing import CliRunner
from PIL import Image

from adrag_app.cli.generate import generate
from adrag_app.generators import GeneratedImage, GenerationFailed, LocalCompositor
from adrag_app.service.ad_service import (
    AdServiceError,
    Candidate,
    list_brand_images,
    milvus_filter,
    retrieve,
)
from adrag_app.service.creatives import make_creatives
from adrag_assets import tracing
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.settings import DEFAULT_EXPERIMENT, Settings, load_settings
from adrag_assets.volume import local as local_volume
from adrag_assets.volume.paths import resolve_in_volume
from tests.support.data import PETS, TEST_ENCODER, pets_images
from tests.support.helpers import draw_brand, run_pipeline

ENCODER_ID = EncoderSpec.parse(TEST_ENCODER).encoder_id
FAKE_TOKEN = "r8_FakeTokenForTests0123456789abcdefXYZ"
QUERY = "a beagle on a beach"  # a breed of the sample: BM25 vouches for it (relevance floor)
SEGMENT = "young urban professionals"
ASSET = dg.AssetKey("ad_creatives")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """ADRAG_HOME with the 296 pets indexed by the tiny encoder, and two brand images."""
    root = tmp_path_factory.mktemp("service")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "ADRAG_HOME": str(root / "home"),
            "ADRAG_ENCODER": TEST_ENCODER,
            "ADRAG_PRECISION": "fp32",
            "ADRAG_BATCH_SIZE": "32",
            "DAGSTER_HOME": str(root / "home" / "dagster"),
            "ADRAG_GENERATOR": "local",  # belt and braces: never Replicate in these tests
        }.items():
            mp.setenv(key, value)
        for key in (
            "ADRAG_VOLUME",
            "ADRAG_MILVUS_URI",
            "REPLICATE_API_TOKEN",
            "ADRAG_MLFLOW_TRACKING_URI",
            "ADRAG_TRACING",
            # Set by mlflow.set_tracking_uri and by the CLI; restored when the module ends.
            "MLFLOW_TRACKING_URI",
            "MLFLOW_LOGGING_LEVEL",
        ):
            mp.delenv(key, raising=False)
        settings = load_settings()
        settings.raw_dir.mkdir(parents=True)
        shutil.copytree(pets_images(), settings.raw_dir / "pets")
        shutil.copy(PETS / "labels.csv", settings.raw_dir / "labels.csv")
        draw_brand(settings.volume / "brand" / "a_bottle.png", (200, 30, 60), "PNG")
        draw_brand(settings.volume / "brand" / "z_box.jpg", (30, 90, 200), "JPEG")
        with dg.instance_for_test() as instance:
            run_pipeline(settings, instance)
        yield settings
        tracing.flush()
        mlflow.set_tracking_uri(None)  # leave no MLflow store behind for other modules


def ads_snapshot(settings: Settings) -> set[str]:
    """Every file and folder under ads/, hidden temp files included."""
    ads = settings.volume / "ads"
    return {p.relative_to(ads).as_posix() for p in ads.rglob("*")} if ads.exists() else set()


def materialization_count(instance: dg.DagsterInstance) -> int:
    return len(
        instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=ASSET), limit=1000).records
    )


class FailingGenerator:
    """A generator whose provider fails: the service must leave no trace of the attempt."""

    name = "failing"
    model = "test-failure"

    def __init__(self, message: str = "The image service failed; please try again.") -> None:
        self.error = GenerationFailed(message, provider_id="pred-123")
        self.calls = 0

    def generate(
        self, seed_image, brand_image, prompt, *, seed=None, aspect_ratio=None
    ) -> GeneratedImage:
        self.calls += 1
        assert Path(seed_image).is_file() and Path(brand_image).is_file()
        raise self.error


# -- paths -----------------------------------------------------------------------------------


def test_resolve_in_volume_refuses_escapes(tmp_path: Path):
    volume = tmp_path / "volume"
    (volume / "raw").mkdir(parents=True)
    (volume / "raw" / "a.jpg").write_bytes(b"x")
    (tmp_path / "volume2").mkdir()  # a sibling whose name starts like the volume's
    (tmp_path / "secret.txt").write_text("outside")
    (volume / "raw" / "inside_link.jpg").symlink_to(volume / "raw" / "a.jpg")
    (volume / "raw" / "out_link.txt").symlink_to(tmp_path / "secret.txt")
    (volume / "etc").symlink_to("/etc")
    linked_volume = tmp_path / "volume_link"
    linked_volume.symlink_to(volume)

    real = volume.resolve()
    assert resolve_in_volume(volume, "raw/a.jpg") == real / "raw" / "a.jpg"
    assert resolve_in_volume(volume, volume / "raw" / "a.jpg") == real / "raw" / "a.jpg"
    assert resolve_in_volume(volume, "raw/inside_link.jpg") == real / "raw" / "a.jpg"
    assert resolve_in_volume(volume, "ads/2026-11-28/new.png") == real / "ads/2026-11-28/new.png"
    # The volume itself may be reached through a symlink.
    assert resolve_in_volume(linked_volume, "raw/a.jpg") == real / "raw" / "a.jpg"

    for bad in (
        "../secret.txt",
        "raw/../../secret.txt",
        "raw/../a.jpg",  # stays inside, but a path that travels never needs '..'
        str(tmp_path / "secret.txt"),
        "/etc/passwd",
        str(tmp_path / "volume2" / "x.png"),
        "raw/out_link.txt",
        "etc/passwd",
        "",
        "   ",
        "raw/a\x00.jpg",
    ):
        with pytest.raises(ValueError):
            resolve_in_volume(volume, bad)


def test_milvus_filter_quotes_values_and_checks_keys():
    assert milvus_filter(None) == ""
    assert milvus_filter({"species": "dog"}) == 'labels["species"] == "dog"'
    assert milvus_filter({"species": "cat", "breed": "bengal"}) == (
        'labels["breed"] == "bengal" and labels["species"] == "cat"'
    )
    assert milvus_filter({"breed": 'say "hi" \\ now'}) == (
        r'labels["breed"] == "say \"hi\" \\ now"'
    )
    for bad in ({'species"] == "x" or labels["a': "dog"}, {"": "dog"}, {"a b": "dog"}):
        with pytest.raises(ValueError, match="label name"):
            milvus_filter(bad)
    with pytest.raises(ValueError, match="string"):
        milvus_filter({"species": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="control"):
        milvus_filter({"species": "dog\x00"})


def test_milvus_filter_excludes_image_ids_and_checks_them():
    ids = ["b" * 64, "a" * 64, "b" * 64]
    assert milvus_filter(None, ids) == f'image_id not in ["{"a" * 64}", "{"b" * 64}"]'
    assert milvus_filter({"species": "dog"}, ["abc"]) == (
        'labels["species"] == "dog" and image_id not in ["abc"]'
    )
    assert milvus_filter(None, []) == ""
    for bad in (['x" or image_id != "'], [""], [3], "abc"):
        with pytest.raises(ValueError, match="image id"):
            milvus_filter(None, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most"):
        milvus_filter(None, [f"{i:064x}" for i in range(501)])


# -- retrieval -------------------------------------------------------------------------------


def test_retrieve_is_deterministic_and_returns_existing_paths(home: Settings):
    first = retrieve(QUERY, settings=home)
    second = retrieve(QUERY, 3, settings=home)
    assert first == second
    assert [c.rank for c in first] == [0, 1, 2]
    assert len({c.image_id for c in first}) == 3
    assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)
    for c in first:
        assert isinstance(c, Candidate)
        assert c.path.startswith("raw/pets/") and not Path(c.path).is_absolute()
        assert (home.volume / c.path).is_file()
        assert set(c.labels) == {"breed", "species"}
    assert len(retrieve(QUERY, k=7, settings=home)) == 7
    with pytest.raises(ValueError, match="empty"):
        retrieve("   ", settings=home)


def test_retrieve_applies_label_filters(home: Settings):
    # The relevance floor is asked of the photos a filter lets through: a description naming
    # both species has a match among either.
    for species in ("cat", "dog"):
        hits = retrieve("a beagle or a cat", k=10, filters={"species": species}, settings=home)
        assert len(hits) == 10
        assert {h.labels["species"] for h in hits} == {species}
    assert retrieve(QUERY, k=10, filters={"species": "cat"}, settings=home) == []  # no beagle
    beagles = retrieve(QUERY, k=5, filters={"breed": "beagle", "species": "dog"}, settings=home)
    assert beagles and all(h.path.startswith("raw/pets/beagle_") for h in beagles)
    # A value crafted to widen the filter matches nothing instead.
    injected = {"species": 'dog" or labels["species"] == "cat'}
    assert retrieve(QUERY, filters=injected, settings=home) == []
    assert retrieve(QUERY, filters={"species": "unicorn"}, settings=home) == []


def test_retrieve_excludes_rejected_photos_inside_the_search(home: Settings):
    first = retrieve(QUERY, filters={"species": "dog"}, settings=home)
    rejected = [c.image_id for c in first]
    second = retrieve(QUERY, filters={"species": "dog"}, settings=home, exclude=rejected)
    # Still a full top-3 (the filter runs inside Milvus), none of them rejected.
    assert len(second) == 3 and not {c.image_id for c in second} & set(rejected)
    assert {c.labels["species"] for c in second} == {"dog"}
    # Excluding one photo moves the others up by one.
    wider = retrieve(QUERY, k=4, filters={"species": "dog"}, settings=home)
    shifted = retrieve(QUERY, filters={"species": "dog"}, settings=home, exclude=rejected[:1])
    assert [c.image_id for c in shifted] == [c.image_id for c in wider[1:4]]


def _one(description: str = QUERY, placement: str = "meta_square", **kwargs):
    """One creative, no contact sheet: the cheapest set the service makes."""
    kwargs.setdefault("generator", LocalCompositor())
    (creative,) = make_creatives(description, [placement], 1, contact_sheet=False, **kwargs)
    return creative


def test_seed_index_is_photo_i_of_the_top_3_searched_with_the_same_exclusions(
    home: Settings, instance
):
    rejected = [c.image_id for c in retrieve(QUERY, settings=home)]
    shown = retrieve(QUERY, settings=home, exclude=rejected)
    ad = _one(seed_index=2, exclude=rejected, settings=home, instance=instance)
    assert ad.metadata["seed_image_id"] == shown[2].image_id
    assert ad.metadata["seed_image_id"] not in rejected


# -- generation ------------------------------------------------------------------------------


def test_creatives_write_png_sidecar_and_dagster_materialization(home: Settings, instance):
    before = ads_snapshot(home)
    candidates = retrieve(QUERY, filters={"species": "dog"}, settings=home)
    made = make_creatives(
        QUERY,
        seed_index=1,
        variants=2,
        segment=SEGMENT,
        user="marketer@example.com",
        filters={"species": "dog"},
        settings=home,
        generator=LocalCompositor(),
        instance=instance,
    )
    # The default set (the chat app's): feed and story, for photos 1 and 2 of the top-3.
    assert [(c.variant, c.placement) for c in made] == [
        (0, "meta_feed"),
        (0, "story"),
        (1, "meta_feed"),
        (1, "story"),
    ]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = f"ads/{today}/a-beagle-on-a-beach-{made[0].set_id}"
    assert all(c.path.startswith(folder + "/") and c.path.endswith(".png") for c in made)
    new = ads_snapshot(home) - before
    files = {n for n in new if "." in Path(n).name}
    expected_files = {p.removeprefix("ads/") for c in made for p in (c.path, c.sidecar)}
    assert files == expected_files | {f"{folder.removeprefix('ads/')}/contact-sheet.png"}, (
        "only the PNGs, their sidecars and the contact sheet appear, no temp files"
    )
    with Image.open(home.volume / made[1].path) as im:
        assert (im.format, im.size) == ("PNG", (1080, 1920))

    for creative in made:
        sidecar = json.loads((home.volume / creative.sidecar).read_text())
        assert sidecar == creative.metadata
        seed = candidates[1 + creative.variant]
        expected = {
            "segment": SEGMENT,
            "description": QUERY,
            "seed_image_id": seed.image_id,
            "seed_path": seed.path,
            "brand_path": "brand/a_bottle.png",  # the first brand image by name
            "generator": "local",
            "encoder_id": ENCODER_ID,
            "user": "marketer@example.com",
            "provider_id": None,
            "path": creative.path,
            "filters": {"species": "dog"},
        }
        assert {k: sidecar[k] for k in expected} == expected
        # Copy for the photo (a dog), never the segment's own words (issue 18).
        assert sidecar["headline"] and SEGMENT not in sidecar["headline"].lower()
        created = datetime.fromisoformat(sidecar["created_at"])
        assert created.tzinfo and abs((datetime.now(UTC) - created).total_seconds()) < 600

    events = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=ASSET), limit=10)
    assert len(events.records) == len(made)
    event = instance.get_latest_materialization_event(ASSET)
    assert event is not None and event.run_id == ""  # a runless report, not a run
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    last = made[-1].metadata
    for key in ("segment", "seed_image_id", "seed_path", "brand_path", "generator", "path"):
        assert meta[key] == last[key], key
    assert meta["dagster/uri"] == str(home.volume / last["path"])
    assert "data:image/jpeg;base64," in meta["creative"]


def test_same_inputs_same_pixels_and_explicit_brand(home: Settings, instance):
    kwargs = dict(settings=home, instance=instance)
    a = _one(brand="brand/z_box.jpg", **kwargs)
    b = _one(brand=home.volume / "brand" / "z_box.jpg", **kwargs)
    assert a.path != b.path  # every set is its own folder ...
    assert a.metadata["sha256"] == b.metadata["sha256"]  # ... of the same picture
    assert a.metadata["brand_path"] == "brand/z_box.jpg"
    assert a.metadata["seed_image_id"] == retrieve(QUERY, settings=home)[0].image_id
    assert materialization_count(instance) == 2
    assert list_brand_images(home) == ["brand/a_bottle.png", "brand/z_box.jpg"]


def test_creatives_refuse_bad_arguments(home: Settings, instance, tmp_path: Path):
    (tmp_path / "outside.png").write_bytes((home.volume / "brand" / "a_bottle.png").read_bytes())
    before = ads_snapshot(home)
    kwargs = dict(settings=home, instance=instance)
    for seed_index in (-1, 3, True):
        with pytest.raises(ValueError, match="seed_index"):
            _one(seed_index=seed_index, **kwargs)
    for brand, match in (
        ("../outside.png", r"'\.\.'"),
        (tmp_path / "outside.png", "outside the volume"),
        ("raw/pets/beagle_10.jpg", "not under brand/"),
        ("brand/missing.png", "does not exist"),
    ):
        with pytest.raises(ValueError, match=match):
            _one(brand=brand, **kwargs)
    with pytest.raises(AdServiceError, match="no photo matches"):
        _one(filters={"species": "unicorn"}, **kwargs)
    empty = home.model_copy(update={"volume": tmp_path / "empty_volume"})
    with pytest.raises(AdServiceError, match="no brand image"):
        _one(**{**kwargs, "settings": empty})
    assert ads_snapshot(home) == before
    assert materialization_count(instance) == 0


def test_failing_generator_leaves_nothing_behind(home: Settings, instance):
    _one(settings=home, instance=instance)
    before, count = ads_snapshot(home), materialization_count(instance)
    latest = instance.get_latest_materialization_event(ASSET)

    failing = FailingGenerator()
    with pytest.raises(GenerationFailed) as excinfo:
        _one(settings=home, generator=failing, instance=instance)
    assert excinfo.value is failing.error  # the generator's own error, message unchanged
    assert str(excinfo.value) == "The image service failed; please try again."
    assert failing.calls == 1
    assert ads_snapshot(home) == before
    assert materialization_count(instance) == count
    assert instance.get_latest_materialization_event(ASSET) == latest


def test_failed_write_or_report_leaves_nothing_behind(home: Settings, instance, monkeypatch):
    before, count = ads_snapshot(home), materialization_count(instance)

    real_replace = os.replace
    calls = []

    def replace_then_fail(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the sidecar is in place, the PNG's rename fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(local_volume.os, "replace", replace_then_fail)
    with pytest.raises(OSError, match="No space left"):
        _one(settings=home, instance=instance)
    monkeypatch.setattr(local_volume.os, "replace", real_replace)
    assert len(calls) == 2
    assert ads_snapshot(home) == before
    assert materialization_count(instance) == count

    class BrokenInstance:
        def report_runless_asset_event(self, event):
            raise RuntimeError("database is locked")

    with pytest.raises(AdServiceError, match="could not be recorded in Dagster"):
        _one(settings=home, instance=BrokenInstance())
    assert ads_snapshot(home) == before


# -- traces ----------------------------------------------------------------------------------


def _traces(experiment_name: str = DEFAULT_EXPERIMENT) -> list:
    tracing.flush()
    experiment = mlflow.get_experiment_by_name(experiment_name)
    assert experiment is not None
    return mlflow.search_traces(
        locations=[experiment.experiment_id], return_type="list", flush=True
    )


def _spans(trace) -> dict[str, object]:
    return {s.name: s for s in trace.data.spans}


def test_traces_record_retrieval_and_generation_without_secrets(
    home: Settings, instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = tmp_path / "mlflow" / "traces.db"
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("REPLICATE_API_TOKEN", FAKE_TOKEN)

    hits = retrieve(QUERY, filters={"species": "dog"}, settings=home)
    ad = _one(seed_index=2, segment=SEGMENT, settings=home, instance=instance)
    # Defence in depth: even an error message that (against the generator contract) carries
    # the token must not put it in a trace.
    failing = FailingGenerator(f"provider said: bad token {FAKE_TOKEN}")
    with pytest.raises(GenerationFailed):
        _one(settings=home, generator=failing, instance=instance)

    assert store.is_file()
    traces = _traces()
    by_root = {}
    for t in traces:
        root = next(s for s in t.data.spans if s.parent_id is None)
        by_root.setdefault(root.name, []).append(t)
    assert len(by_root["retrieve"]) == 1 and len(by_root["make_creatives"]) == 2

    # retrieve: a RETRIEVER span whose outputs are the ranked documents.
    span = _spans(by_root["retrieve"][0])["retrieve"]
    assert span.span_type == "RETRIEVER"
    assert span.inputs == {
        "description": QUERY,
        "k": 3,
        "filters": {"species": "dog"},
        "exclude": [],
    }
    assert [d["metadata"]["doc_uri"] for d in span.outputs] == [h.path for h in hits]
    assert [d["metadata"]["image_id"] for d in span.outputs] == [h.image_id for h in hits]
    assert [d["metadata"]["score"] for d in span.outputs] == pytest.approx([h.score for h in hits])
    assert span.attributes["encoder_id"] == ENCODER_ID

    ok, failed = sorted(by_root["make_creatives"], key=lambda t: t.info.state != "OK")
    spans = _spans(ok)
    # The offline compositor lays the creative out itself: no image model is called.
    assert {n: s.span_type for n, s in spans.items()} == {
        "make_creatives": "CHAIN",
        "retrieve": "RETRIEVER",
    }
    root = spans["make_creatives"]
    assert spans["retrieve"].parent_id == root.span_id
    assert root.inputs["segment"] == SEGMENT and root.inputs["seed_index"] == 2
    assert root.outputs["creatives"] == [ad.path]

    assert failed.info.state == "ERROR"
    tool = _spans(failed)["generate_image"]
    assert tool.span_type == "TOOL" and tool.status.status_code == "ERROR"
    assert tool.attributes["generator"] == "failing"
    assert "[redacted]" in failed.to_json()

    for t in traces:
        assert FAKE_TOKEN not in t.to_json()


def test_tracing_defaults_to_adrag_home_and_never_breaks_the_service(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    assert load_settings().tracing.tracking_uri == f"sqlite:///{home.home / 'mlflow' / 'mlflow.db'}"
    # A store that cannot be created: tracing gives up with a warning, the service goes on.
    (tmp_path / "not_a_dir").write_text("a file where a folder should be")
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/not_a_dir/x/m.db")
    assert tracing.configure() is False
    assert len(retrieve(QUERY, settings=home)) == 3
    monkeypatch.setenv("ADRAG_TRACING", "off")
    assert tracing.configure() is False
    assert len(retrieve(QUERY, settings=home)) == 3


# -- CLI and Dagster definitions ---------------------------------------------------------------


def test_cli_generate(home: Settings):
    from adrag_app.cli import main

    # The `adrag` group with `generate` added, without mutating the real one.
    adrag = click.Group(
        name="adrag",
        callback=main.callback,
        params=main.params,
        commands={**main.commands, "generate": generate},
    )
    runner = CliRunner()
    out = runner.invoke(adrag, ["generate", QUERY, "--segment", SEGMENT, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    # No --placement: the chat app's default set, one variant.
    assert [c["placement"] for c in data] == ["meta_feed", "story"]
    first = data[0]
    assert set(first) >= {"path", "sidecar", "file", "seed_path", "generator", "model"}
    assert first["generator"] == "local" and Path(first["file"]).is_file()
    assert first["seed_path"] == retrieve(QUERY, settings=home)[0].path
    assert SEGMENT not in first["headline"].lower()
    assert "NOT semantic" in out.stderr

    # A description with a match among the cats (the relevance floor is asked of them).
    cat = "a bengal cat on a beach"
    args = [cat, "--seed-index", "2", "--filter", "species=cat", "--placement", "meta_square"]
    plain = runner.invoke(generate, args)
    assert plain.exit_code == 0, plain.output
    path = Path(plain.stdout.strip())
    assert path.is_file() and path.is_relative_to(home.volume)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["seed_labels"]["species"] == "cat"
    third = retrieve(cat, filters={"species": "cat"}, settings=home)[2]
    assert meta["seed_image_id"] == third.image_id

    # Every creative is a materialization on the persistent instance at DAGSTER_HOME.
    with dg.DagsterInstance.get() as instance:
        paths = [
            r.asset_materialization.metadata["path"].value
            for r in instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=ASSET), limit=10
            ).records
        ]
    assert {c["path"] for c in data} | {path.relative_to(home.volume).as_posix()} <= set(paths)

    for args, message in (
        ([QUERY, "--brand", "../../etc/passwd"], "'..'"),
        ([QUERY, "--filter", "species=unicorn"], "no photo matches"),
    ):
        bad = runner.invoke(generate, args)
        assert bad.exit_code == 1, bad.output
        lines = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0]
        assert "Traceback" not in bad.stderr and bad.stdout == ""
    # Usage errors (click's exit 2), in one line too.
    for args, message in (([" "], "empty"), ([QUERY, "--seed-index", "3"], "--seed-index")):
        bad = runner.invoke(generate, args)
        assert bad.exit_code == 2, bad.output
        assert bad.stderr.startswith("error: ") and message in bad.stderr
        assert len(bad.stderr.splitlines()) == 1


def test_ad_assets_join_the_asset_graph():
    from adrag_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    ads = dg.AssetKey("ad_creatives")
    assert graph.get(ads).parent_keys == {dg.AssetKey("image_index"), dg.AssetKey("brand_images")}
    assert graph.get(ads).group_name == "ads"
    assert dg.AssetKey("brand_images") in graph.get_all_asset_keys()
    # One way to make an ad: the single-image asset of the old path is gone.
    assert dg.AssetKey("generated_ads") not in graph.get_all_asset_keys()
