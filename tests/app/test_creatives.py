"""Campaign creatives on real pet photos: every placement's pixels, safe zones, contrast
measured on the rendered pixels, the product beside the subject, copy that never quotes the
segment, versions with parents, Dagster events and the spec check, the CLI and the zip.

The index (five breeds, the tiny encoder, Milvus Lite) is built once for the module; the
service writes into the module's volume, so tests compare before/after.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFilter

from adrag_app.cli.generate import generate
from adrag_app.creative.brandkit import DEJAVU, BrandKitError, default_kit, load_kit
from adrag_app.creative.copywriter import BannedWords
from adrag_app.creative.layout import Look, render, text_mask
from adrag_app.creative.placements import PlacementError, load_placements
from adrag_app.creative.product import cut_out
from adrag_app.service.creatives import Edit, edit_creative, export_zip, make_creatives
from adrag_assets import tracing
from adrag_assets.defs.ads import ad_creatives, creative_meets_placement_spec
from adrag_assets.defs.resources import VolumeResource
from adrag_assets.settings import Settings, load_settings
from adrag_assets.volume import open_volume
from tests.support.data import copy_few_pets, pets_images
from tests.support.helpers import draw_brand, run_pipeline

ASSET = dg.AssetKey("ad_creatives")
SIZES = {
    "meta_feed": (1080, 1350),
    "meta_square": (1080, 1080),
    "story": (1080, 1920),
    "google_landscape": (1200, 628),
    "google_square": (1200, 1200),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("creatives")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "ADRAG_HOME": str(root / "home"),
            "ADRAG_ENCODER": "random:adrag-tiny",
            "ADRAG_PRECISION": "fp32",
            "ADRAG_BATCH_SIZE": "32",
            "DAGSTER_HOME": str(root / "home" / "dagster"),
            "ADRAG_GENERATOR": "local",
            "ADRAG_TRACING": "false",
        }.items():
            mp.setenv(key, value)
        for key in (
            "ADRAG_VOLUME",
            "ADRAG_MILVUS_URI",
            "REPLICATE_API_TOKEN",
            "ADRAG_LLM_BASE_URL",
            "ADRAG_LLM_MODEL",
            "MLFLOW_TRACKING_URI",
        ):
            mp.delenv(key, raising=False)
        settings = load_settings()
        copy_few_pets(settings.raw_dir)
        draw_brand(settings.volume / "brand" / "a_bottle.png", (200, 30, 60), "PNG")
        with dg.instance_for_test() as instance:
            run_pipeline(settings, instance)
        yield settings
        tracing.flush()
        mlflow.set_tracking_uri(None)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


# -- independent measurements ------------------------------------------------------------------


def wcag_luminance(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(float) / 255
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * c[..., 0] + 0.7152 * c[..., 1] + 0.0722 * c[..., 2]


def measured_contrast(image: Image.Image, block: dict, font_path: Path) -> float:
    """The text colour against the worst 2 % of the box's pixels that are not glyphs (the
    glyphs drawn again from the sidecar's lines, origin and size, grown by 2 px)."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_path), block["font_px"])
    mask = text_mask(image.size, block["lines"], tuple(block["origin"]), font, block["spacing"])
    box = tuple(block["box"])
    if block["role"] == "cta":  # the pill's straight middle: all button
        r = (box[3] - box[1]) // 2
        box = (box[0] + r, box[1] + 2, box[2] - r, box[3] - 2)
    glyphs = np.asarray(mask.crop(box).filter(ImageFilter.MaxFilter(5))) > 0
    background = np.asarray(image.convert("RGB").crop(box))[~glyphs]
    color = np.array([int(block["color"][i : i + 2], 16) for i in (1, 3, 5)])
    lt = float(wcag_luminance(color))
    lb = wcag_luminance(background)
    ratios = (np.maximum(lb, lt) + 0.05) / (np.minimum(lb, lt) + 0.05)
    return float(np.percentile(ratios, 2))


def overlap_share(product: list[int], subject: list[int]) -> float:
    ox = max(0, min(product[2], subject[2]) - max(product[0], subject[0]))
    oy = max(0, min(product[3], subject[3]) - max(product[1], subject[1]))
    return ox * oy / ((subject[2] - subject[0]) * (subject[3] - subject[1]))


def inside(box: list[int], outer: tuple[int, int, int, int]) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def check_creative_file(settings: Settings, c, font: Path = DEJAVU / "DejaVuSans-Bold.ttf"):
    placements = load_placements()
    volume = settings.volume
    with Image.open(volume / c.path) as im:
        im.load()
    assert im.size == SIZES[c.placement] == (c.width, c.height)
    safe = placements[c.placement].safe_box()
    sidecar = json.loads((volume / c.sidecar).read_text())
    assert sidecar["text_boxes"] == c.text_boxes and sidecar["safe_zone_ok"] is True
    roles = {b["role"] for b in c.text_boxes}
    assert {"headline", "cta"} <= roles
    for block in c.text_boxes:
        assert inside(block["box"], safe), (c.placement, block)
        assert measured_contrast(im, block, font) >= 4.5, (c.placement, block)
    if c.product_box:
        assert overlap_share(c.product_box, c.subject_box) <= 0.10, c.placement
    return sidecar


# -- placements and brand kit (data) -----------------------------------------------------------


def test_placements_are_data_overridable_with_one_error_per_problem(tmp_path: Path):
    placements = load_placements()
    assert {n: p.size for n, p in placements.items()} == SIZES
    story = placements["story"]
    assert story.safe_box() == (65, 269, 1015, 1248)  # top 14 %, bottom 35 %, sides 6 %
    assert placements["google_landscape"].limits.headline == 30
    assert placements["meta_feed"].limits.headline == 40

    volume = open_volume(tmp_path)
    (tmp_path / "campaigns").mkdir()
    override = tmp_path / "campaigns" / "placements.yaml"
    override.write_text(
        "placements:\n"
        "  story: {safe_zone: {bottom: 0.4}}\n"
        "  tiktok: {label: TikTok, platform: tiktok, width: 1080, height: 1920,\n"
        "           aspect_ratio: '9:16', limits: {headline: 35}}\n"
    )
    changed = load_placements(volume)
    assert changed["story"].safe_zone.bottom == 0.4 and changed["story"].safe_zone.top == 0.14
    assert changed["tiktok"].size == (1080, 1920)

    override.write_text(
        "placements:\n"
        "  story: {width: 12}\n"
        "  odd: {label: Odd, platform: x, width: 500, height: 500, aspect_ratio: '7:3',\n"
        "        limits: {headline: 20}, colour: red}\n"
    )
    with pytest.raises(PlacementError) as error:
        load_placements(volume)
    lines = str(error.value).splitlines()
    assert len(lines) == 3, lines  # width, aspect ratio, unknown field: one line each
    assert all(str(override) in line for line in lines)
    assert any("placements.story.width" in line for line in lines)
    assert any("7:3" in line for line in lines)
    assert any("colour" in line for line in lines)


def test_brand_kit_is_validated_and_used(tmp_path: Path):
    volume = open_volume(tmp_path)
    (tmp_path / "brand").mkdir()
    kit_file = tmp_path / "brand" / "kit.yaml"
    kit_file.write_text(
        "name: Pawsome\ncolors: {primary: '#1f3a5f', accent: 'orange'}\nfont: brand/none.ttf\n"
    )
    with pytest.raises(BrandKitError) as error:
        load_kit(volume)
    assert "colors.accent" in str(error.value) and str(kit_file) in str(error.value)

    kit_file.write_text(
        "name: Pawsome\ncolors: {primary: '#1f3a5f', accent: '#f2a541'}\n"
        "font: brand/none.ttf\nlogo: brand/logo.png\n"
    )
    with pytest.raises(BrandKitError) as error:
        load_kit(volume)
    assert len(str(error.value).splitlines()) == 2  # the font and the logo

    shutil.copy(DEJAVU / "DejaVuSerif-Bold.ttf", tmp_path / "brand" / "serif.ttf")
    Image.new("RGBA", (200, 80), (255, 255, 255, 255)).save(tmp_path / "brand" / "logo.png")
    kit_file.write_text(
        "name: Pawsome\ncolors: {primary: '#1f3a5f', accent: '#f2a541', text: '#ffffff'}\n"
        "font: brand/serif.ttf\nlogo: brand/logo.png\ncta: Adopt the habit\n"
        "tone: [playful]\nbanned: [cheap]\n"
    )
    kit = load_kit(volume)
    assert kit.name == "Pawsome" and kit.primary == (31, 58, 95) and kit.cta == "Adopt the habit"
    assert kit.source == "brand/kit.yaml" and kit.logo is not None
    assert kit.font_bytes == (DEJAVU / "DejaVuSerif-Bold.ttf").read_bytes()
    assert kit.banned_in("A Cheap trick") == ["cheap"] and kit.banned_in("cheapest") == []

    bottle = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(bottle).rectangle((30, 10, 70, 90), fill=(20, 120, 200))
    default = default_kit(bottle, "brand/b.png")
    assert "default" in default.source and "DejaVu" in default.source
    assert default.primary != default.accent and max(default.accent) - min(default.accent) > 60


def test_product_cut_out_removes_a_uniform_background():
    shot = Image.new("RGB", (120, 160), (250, 250, 250))
    ImageDraw.Draw(shot).ellipse((30, 20, 90, 140), fill=(10, 90, 40))
    cut = cut_out(shot)
    assert cut.mode == "RGBA" and cut.size[0] <= 64 and cut.size[1] <= 124
    alpha = np.asarray(cut.getchannel("A"))
    assert alpha[0, 0] == 0 and alpha[cut.height // 2, cut.width // 2] == 255


# -- layout on hard photos (pure) ---------------------------------------------------------------


def white_dog_on_snow() -> Image.Image:
    img = Image.new("RGB", (900, 700), (246, 248, 252))
    d = ImageDraw.Draw(img)
    d.ellipse((300, 260, 640, 520), fill=(255, 255, 255), outline=(225, 228, 235), width=3)
    d.ellipse((560, 180, 720, 330), fill=(255, 255, 255), outline=(225, 228, 235), width=3)
    d.ellipse((640, 240, 660, 260), fill=(20, 20, 20))
    for x in (330, 400, 520, 590):
        d.rectangle((x, 480, x + 30, 640), fill=(252, 252, 255))
    return img


def black_cat_at_night() -> Image.Image:
    img = Image.new("RGB", (800, 800), (12, 12, 16))
    d = ImageDraw.Draw(img)
    d.ellipse((260, 330, 540, 680), fill=(4, 4, 6))
    d.ellipse((300, 170, 500, 370), fill=(5, 5, 7))
    d.polygon([(310, 220), (330, 120), (380, 190)], fill=(5, 5, 7))
    d.polygon([(490, 220), (470, 120), (420, 190)], fill=(5, 5, 7))
    d.ellipse((350, 240, 375, 262), fill=(190, 200, 40))
    d.ellipse((425, 240, 450, 262), fill=(190, 200, 40))
    return img


@pytest.mark.parametrize(
    ("photo", "kit_text"),
    [
        # The kit's own text colour is the worst choice on each: white on snow, dark at night.
        (white_dog_on_snow(), "#ffffff"),
        (black_cat_at_night(), "#111111"),
        (Image.open(pets_images() / "samoyed_114.jpg").convert("RGB"), "#ffffff"),
        (Image.open(pets_images() / "Bombay_121.jpg").convert("RGB"), "#111111"),
    ],
    ids=["white-dog-on-snow", "black-cat-at-night", "samoyed", "bombay"],
)
def test_layout_contrast_and_safe_zones_on_hard_photos(photo: Image.Image, kit_text: str):
    bottle = Image.new("RGBA", (240, 360), (0, 0, 0, 0))
    ImageDraw.Draw(bottle).rounded_rectangle((50, 60, 190, 340), radius=24, fill=(240, 240, 240))
    kit = default_kit(bottle, "brand/bottle.png")
    kit = type(kit)(
        **{**kit.__dict__, "text": tuple(int(kit_text[i : i + 2], 16) for i in (1, 3, 5))}
    )
    for placement in load_placements().values():
        out = render(photo, cut_out(bottle), kit, "Winter walks, warm paws", "Shop now", placement)
        assert out.image.size == placement.size
        assert out.safe_ok, out.problems
        safe = placement.safe_box()
        for tb in out.text_boxes:
            block = tb.as_dict()
            assert inside(block["box"], safe)
            assert measured_contrast(out.image, block, DEJAVU / "DejaVuSans-Bold.ttf") >= 4.5, (
                placement.name,
                block,
            )
        assert overlap_share(list(out.product_box), list(out.subject_box)) <= 0.10


def test_looks_change_the_pixels_and_are_checked():
    photo = Image.open(pets_images() / "samoyed_114.jpg").convert("RGB")
    kit = default_kit(None)
    square = load_placements()["meta_square"]
    plain = np.asarray(render(photo, None, kit, "Hi", "Go", square).image, dtype=float)
    warm = np.asarray(render(photo, None, kit, "Hi", "Go", square, Look(warmth=1)).image, float)
    assert warm[..., 0].mean() > plain[..., 0].mean() and warm[..., 2].mean() < plain[..., 2].mean()
    with pytest.raises(ValueError, match="product position"):
        Look(product_position="middle")


# -- the service -------------------------------------------------------------------------------


def test_one_brief_gives_variants_times_placements(home: Settings, instance):
    before = len(
        instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=ASSET), limit=500).records
    )
    segment = "first-time owners of anxious rescue greyhounds"
    creatives = make_creatives(
        "a dog in a garden", "all", 3, segment=segment, settings=home, instance=instance
    )
    assert len(creatives) == 15
    assert [c.placement for c in creatives[:5]] == list(SIZES)
    assert {c.variant for c in creatives} == {0, 1, 2}
    assert len({c.metadata["seed_image_id"] for c in creatives}) == 3
    for c in creatives:
        sidecar = check_creative_file(home, c)
        assert segment.lower() not in c.headline.lower()
        assert sidecar["segment"] == segment and sidecar["brand_kit_digest"]
        assert sidecar["version"] == 1 and sidecar["parent"] is None
        assert sidecar["generator"] == "local" and sidecar["spec_problems"] == []
        assert c.as_dict().keys() >= {
            "path",
            "placement",
            "width",
            "height",
            "headline",
            "primary_text",
            "cta",
            "text_boxes",
            "product_box",
            "subject_box",
            "version",
            "parent",
        }
    sheet = home.volume / creatives[0].metadata["contact_sheet"]
    assert sheet.parent == (home.volume / creatives[0].path).parent
    with Image.open(sheet) as im:
        assert im.width > im.height  # three rows of five

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ASSET), limit=500
    ).records
    assert len(records) - before == 15
    meta = records[0].asset_materialization.metadata
    assert {
        "placement",
        "size",
        "headline",
        "contrast",
        "safe_zone_ok",
        "seed_image_id",
        "brand_kit_digest",
        "generator",
    } <= meta.keys()
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(ASSET, "meets_placement_spec"), limit=50
    )
    assert len(checks) >= 15


def test_marketer_headline_wins_and_banned_words_are_refused(home: Settings, instance):
    kit_file = home.volume / "brand" / "kit.yaml"
    kit_file.write_text(
        "name: Pawsome\ncolors: {primary: '#1f3a5f', accent: '#f2a541'}\nbanned: [cheap]\n"
    )
    try:
        with pytest.raises(BannedWords, match="'cheap'"):
            make_creatives(
                "a pug",
                "meta_square",
                1,
                headline="Cheap and cheerful",
                settings=home,
                instance=instance,
            )
        (c,) = make_creatives(
            "a pug", "meta_square", 1, headline="Home at last", settings=home, instance=instance
        )
        assert c.headline == "Home at last" and c.metadata["copy_source"] == "marketer"
        assert c.metadata["brand_kit_source"] == "brand/kit.yaml"
        # Google allows 30 characters: the marketer's words, cut at a word boundary.
        long = "Every single walk feels like the very first one"
        (g,) = make_creatives(
            "a pug", "google_landscape", 1, headline=long, settings=home, instance=instance
        )
        assert len(g.headline) <= 30 and long.startswith(g.headline) and g.metadata["notes"]
    finally:
        kit_file.unlink()


def test_edits_make_versions_with_parents_and_keep_the_old_ones(home: Settings, instance):
    (first,) = make_creatives("a samoyed", "meta_feed", 1, settings=home, instance=instance)
    original = (home.volume / first.path).read_bytes()
    second = edit_creative(
        first.path, Edit(headline="Home at last", warmth=0.5), settings=home, instance=instance
    )
    assert second.parent == first.path and second.version == 2 and second.headline == "Home at last"
    assert second.metadata["render"]["look"]["warmth"] == 0.5
    third = edit_creative(
        second.path,
        Edit(placement="story", product_position="top-left", product_scale=0.8),
        settings=home,
        instance=instance,
    )
    assert third.parent == second.path and third.placement == "story"
    assert (third.width, third.height) == SIZES["story"] and third.headline == "Home at last"
    assert third.metadata["render"]["look"]["product_position"] == "top-left"
    check_creative_file(home, third)
    # Nothing replaced: the first version is still there, byte for byte ("undo" = the parent).
    assert (home.volume / first.path).read_bytes() == original
    with pytest.raises(ValueError, match="unknown placement"):
        edit_creative(third.path, Edit(placement="billboard"), settings=home, instance=instance)


def test_asset_check_fails_a_creative_that_breaks_its_spec(home: Settings, instance):
    (c,) = make_creatives("a beagle", "story", 1, settings=home, instance=instance)
    job = dg.Definitions(
        assets=[ad_creatives],
        asset_checks=[creative_meets_placement_spec],
        resources={"volume": VolumeResource(root=str(home.volume))},
        jobs=[
            dg.define_asset_job(
                "check", selection=dg.AssetSelection.checks(creative_meets_placement_spec)
            )
        ],
    ).resolve_job_def("check")
    (ok,) = job.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert ok.passed, ok.description
    # Someone squashes the story to a square: the check reads the files back and fails it.
    path = home.volume / c.path
    with Image.open(path) as im:
        im.resize((1080, 1080)).save(path)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    (bad,) = result.get_asset_check_evaluations()
    assert not bad.passed and "1080x1920" in bad.description


def test_cli_prints_creatives_as_json_and_exports_a_zip(home: Settings, tmp_path: Path):
    target = tmp_path / "set.zip"
    out = CliRunner().invoke(
        generate,
        [
            "a persian cat",
            "--placement",
            "meta_feed,google_square",
            "--variants",
            "2",
            "--segment",
            "retirees who love small dogs",
            "--zip",
            str(target),
            "--json",
        ],
        obj={"settings": home, "verbose": False},
    )
    assert out.exit_code == 0, out.output
    creatives = json.loads(out.stdout)
    assert len(creatives) == 4
    for c in creatives:
        assert (c["width"], c["height"]) == SIZES[c["placement"]]
        assert all(set(b) == {"text", "box", "contrast"} for b in c["text_boxes"])
        assert "retirees who love small dogs" not in c["headline"].lower()
    with zipfile.ZipFile(target) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert [r["file"] for r in rows] == [Path(c["path"]).name for c in creatives]
        assert rows[0].keys() == {
            "file",
            "placement",
            "size",
            "headline",
            "primary text",
            "call to action",
        }
        for row in rows:
            with Image.open(io.BytesIO(zf.read(row["file"]))) as im:
                assert f"{im.width}x{im.height}" == row["size"]
    assert export_zip([c["path"] for c in creatives], home)[:2] == b"PK"

    bad = CliRunner().invoke(
        generate, ["a cat", "--placement", "billboard"], obj={"settings": home, "verbose": False}
    )
    assert bad.exit_code != 0 and "unknown placement" in bad.output


def test_replicate_one_generation_per_aspect_ratio_then_adrags_text(home: Settings, instance):
    from adrag_app.generators import ReplicateGenerator
    from adrag_assets.settings import GeneratorSettings
    from tests.support.fake_replicate import FakeReplicate, Scenario

    token = "r8_FakeTokenForCreatives0123456789abcdef"
    buffer = io.BytesIO()
    Image.open(pets_images() / "samoyed_114.jpg").convert("RGB").save(buffer, "PNG")
    with FakeReplicate(token, Scenario(output=buffer.getvalue())) as api:
        generator = ReplicateGenerator(
            GeneratorSettings(
                replicate_api_token=token, replicate_base_url=api.base_url, timeout_s=60
            )
        )
        creatives = make_creatives(
            "a dog on grass", "all", 2, settings=home, instance=instance, generator=generator
        )
        sent = [r.json()["input"] for r in api.creates]
        # Five placements, four shapes (the two squares share one): 2 variants x 4 ratios.
        assert len(sent) == 8
        assert sorted(i["aspect_ratio"] for i in sent) == sorted(["4:5", "1:1", "9:16", "2:1"] * 2)
        assert all("Headline" not in i["prompt"] and "No text" in i["prompt"] for i in sent)
        edited = edit_creative(
            creatives[0].path,
            Edit(headline="Home at last"),
            settings=home,
            instance=instance,
            generator=generator,
        )
        assert len(api.creates) == 8  # a text edit reuses the model's picture
    assert edited.headline == "Home at last" and edited.parent == creatives[0].path
    for c in creatives:
        assert c.metadata["generator"] == "replicate" and c.metadata["provider_id"]
        assert c.product_box is None  # the model placed the product
        assert (home.volume / c.metadata["base_path"]).is_file()
        check_creative_file(home, c)
    assert token not in json.dumps([c.metadata for c in creatives])


def test_a_failed_generation_leaves_nothing_behind(home: Settings, instance):
    from adrag_app.generators import GenerationFailed, ReplicateGenerator
    from adrag_assets.settings import GeneratorSettings
    from tests.support.fake_replicate import FakeReplicate, Scenario

    def files() -> set[Path]:
        return set((home.volume / "ads").rglob("*"))

    before, events = (
        files(),
        len(
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=ASSET), limit=500
            ).records
        ),
    )
    token = "r8_FakeTokenForCreatives0123456789abcdef"
    with FakeReplicate(token, Scenario(final_status="failed", error="model crashed")) as api:
        generator = ReplicateGenerator(
            GeneratorSettings(replicate_api_token=token, replicate_base_url=api.base_url)
        )
        with pytest.raises(GenerationFailed, match="model crashed"):
            make_creatives("a pug", "all", 2, settings=home, instance=instance, generator=generator)
    assert files() == before
    after = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=ASSET), limit=500)
    assert len(after.records) == events


def test_status_names_the_brand_kit_in_use(home: Settings):
    from adrag_app.cli import main

    def kit() -> str:
        out = CliRunner().invoke(main, ["status", "--json"], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout[out.stdout.index("{") :])["brand_kit"]

    assert kit() == "default (colours from brand/a_bottle.png, DejaVu Sans Bold)"
    kit_file = home.volume / "brand" / "kit.yaml"
    kit_file.write_text("name: Pawsome\ncolors: {primary: '#1f3a5f', accent: '#f2a541'}\n")
    try:
        assert kit() == "brand/kit.yaml (Pawsome)"
        kit_file.write_text("name: Pawsome\ncolors: {primary: navy, accent: '#f2a541'}\n")
        assert "not usable" in kit() and "colors.primary" in kit()
    finally:
        kit_file.unlink()
