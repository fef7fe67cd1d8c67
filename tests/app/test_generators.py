"""Tests for the ad generators.

The Replicate tests run the real ``replicate`` client against ``FakeReplicate``, a local HTTP
server, and assert on what went over the wire. Backoff and timeouts run on an injected
sleep/clock, so nothing waits for real and nothing depends on wall time.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adrag_app.generators import (
    GeneratedImage,
    GenerationError,
    GenerationFailed,
    GenerationRefused,
    GenerationTimeout,
    GenerationUnavailable,
    Generator,
    LocalCompositor,
    ReplicateGenerator,
    make_generator,
)
from adrag_app.generators.replicate_generator import normalise_base_url, parse_retry_after
from adrag_assets.settings import (
    DEFAULT_REPLICATE_MODEL,
    GeneratorSettings,
    SettingsError,
    load_settings,
)
from tests.support.fake_replicate import FakeReplicate, Scenario, Scripted

TOKEN = "r8_TestTokenThatMustNeverLeak0123456789"
PETS = Path("/work/shared/datasets/oxford-pets-sample/images")
MAGENTA = (255, 0, 255)
PROMPT = 'Put the product from image 2 on the table in image 1. Headline: "Summer picnic ready"'


# -- helpers ---------------------------------------------------------------------------------


def _save(path: Path, image: Image.Image, fmt: str = "PNG") -> Path:
    image.save(path, format=fmt)
    return path


def _gradient(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A seed photo stand-in with no pure white or magenta pixels in it."""
    width, height = size
    x = np.linspace(20, 200, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(40, 180, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 90)], axis=-1), "RGB")


@pytest.fixture
def seed_path(tmp_path: Path) -> Path:
    return _save(tmp_path / "seed.jpg", _gradient(), "JPEG")


@pytest.fixture
def brand_path(tmp_path: Path) -> Path:
    return _save(tmp_path / "brand.png", Image.new("RGB", (200, 120), MAGENTA))


class FakeClock:
    """Time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _settings(api: FakeReplicate, **overrides: object) -> GeneratorSettings:
    values: dict[str, object] = {
        "replicate_api_token": TOKEN,
        "replicate_base_url": api.base_url,
        "timeout_s": 30.0,
        "backoff_initial_s": 0.5,
        "backoff_max_s": 4.0,
        "poll_interval_s": 1.0,
        "max_attempts": 4,
    }
    values.update(overrides)
    return GeneratorSettings(**values)  # type: ignore[arg-type]


def _generator(api: FakeReplicate, clock: FakeClock, **overrides: object) -> ReplicateGenerator:
    return ReplicateGenerator(_settings(api, **overrides), sleep=clock.sleep, clock=clock)


def _decode_data_uri(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    assert header.endswith(";base64")
    return header.removeprefix("data:").removesuffix(";base64"), base64.b64decode(payload)


def _assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


# -- Replicate: happy paths ----------------------------------------------------------------


def test_success_sends_the_documented_inputs_and_returns_png(
    seed_path: Path, brand_path: Path
) -> None:
    clock = FakeClock()
    with FakeReplicate(TOKEN) as api:
        result = _generator(api, clock).generate(seed_path, brand_path, PROMPT, seed=42)

    (create,) = api.creates
    assert create.path == f"/v1/models/{DEFAULT_REPLICATE_MODEL}/predictions"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    # Prefer: wait is bounded by the remaining time budget (30 s here), not the 60 s maximum.
    assert create.headers["prefer"] == "wait=30"
    sent = create.json()["input"]
    assert sent["prompt"] == PROMPT
    assert sent["aspect_ratio"] == "match_input_image"
    assert sent["output_format"] == "png"
    assert sent["safety_tolerance"] == 2
    assert sent["seed"] == 42
    assert _decode_data_uri(sent["input_image_1"]) == ("image/jpeg", seed_path.read_bytes())
    assert _decode_data_uri(sent["input_image_2"]) == ("image/png", brand_path.read_bytes())

    # Finished within the `Prefer: wait` window: no polling, one download, nothing canceled.
    assert api.polls == [] and api.cancels == [] and len(api.downloads) == 1
    assert isinstance(result, GeneratedImage)
    assert result.png == api.scenario.output
    assert (result.generator, result.model) == ("replicate", DEFAULT_REPLICATE_MODEL)
    assert result.provider_id == "pred0001"
    assert result.duration_s >= 0
    assert clock.sleeps == []


def test_seed_is_omitted_when_not_given(seed_path: Path, brand_path: Path) -> None:
    with FakeReplicate(TOKEN) as api:
        _generator(api, FakeClock(), aspect_ratio="1:1").generate(seed_path, brand_path, PROMPT)
    sent = api.creates[0].json()["input"]
    assert "seed" not in sent
    assert sent["aspect_ratio"] == "1:1"


def test_slow_prediction_is_polled_until_it_succeeds(seed_path: Path, brand_path: Path) -> None:
    clock = FakeClock()
    with FakeReplicate(TOKEN, Scenario(polls_until_done=3)) as api:
        result = _generator(api, clock).generate(seed_path, brand_path, PROMPT)

    assert len(api.creates) == 1
    assert [p.path for p in api.polls] == ["/v1/predictions/pred0001"] * 3
    assert api.cancels == []
    assert clock.sleeps == [1.0, 1.0]  # poll interval between the three polls
    assert result.provider_id == "pred0001"
    assert Image.open(io.BytesIO(result.png)).format == "PNG"


def test_transient_poll_error_is_polled_through(seed_path: Path, brand_path: Path) -> None:
    scenario = Scenario(polls_until_done=1, poll_responses=[Scripted(500, {"detail": "oops"})])
    with FakeReplicate(TOKEN, scenario) as api:
        result = _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    assert len(api.polls) == 2
    assert result.provider_id == "pred0001"


def test_versioned_model_uses_the_predictions_endpoint(seed_path: Path, brand_path: Path) -> None:
    with FakeReplicate(TOKEN) as api:
        gen = _generator(
            api, FakeClock(), replicate_model="acme/kontext-ft:abc123", timeout_s=180.0
        )
        gen.generate(seed_path, brand_path, PROMPT)
    (create,) = api.creates
    assert create.path == "/v1/predictions"
    assert create.json()["version"] == "abc123"
    assert create.headers["prefer"] == "wait=60"  # Replicate's maximum


# -- Replicate: retries ----------------------------------------------------------------------


def test_429_is_retried_after_the_servers_retry_after(seed_path: Path, brand_path: Path) -> None:
    clock = FakeClock()
    busy = Scripted(429, {"detail": "Request was throttled."}, {"Retry-After": "7"})
    with FakeReplicate(TOKEN, Scenario(create_responses=[busy])) as api:
        result = _generator(api, clock).generate(seed_path, brand_path, PROMPT)
    assert len(api.creates) == 2
    assert clock.sleeps == [7.0]
    # Both attempts carried the same inputs (the images were encoded once).
    assert api.creates[0].body == api.creates[1].body
    assert result.provider_id == "pred0001"


def test_5xx_is_retried_with_exponential_backoff(seed_path: Path, brand_path: Path) -> None:
    clock = FakeClock()
    errors = [Scripted(500, {"detail": "internal"}), Scripted(502, {"detail": "bad gateway"})]
    with FakeReplicate(TOKEN, Scenario(create_responses=errors)) as api:
        result = _generator(api, clock).generate(seed_path, brand_path, PROMPT)
    assert len(api.creates) == 3
    assert clock.sleeps == [0.5, 1.0]
    assert result.png


def test_retries_are_bounded_by_attempts(seed_path: Path, brand_path: Path) -> None:
    clock = FakeClock()
    errors = [Scripted(503, {"detail": "unavailable"}) for _ in range(10)]
    with (
        FakeReplicate(TOKEN, Scenario(create_responses=errors)) as api,
        pytest.raises(GenerationUnavailable, match="busy or unreachable") as info,
    ):
        _generator(api, clock, max_attempts=3).generate(seed_path, brand_path, PROMPT)
    assert len(api.creates) == 3
    assert clock.sleeps == [0.5, 1.0]
    assert "3 attempts" in str(info.value)


def test_retry_after_beyond_the_deadline_gives_up_at_once(
    seed_path: Path, brand_path: Path
) -> None:
    clock = FakeClock()
    busy = Scripted(429, {"detail": "throttled"}, {"Retry-After": "3600"})
    with (
        FakeReplicate(TOKEN, Scenario(create_responses=[busy])) as api,
        pytest.raises(GenerationUnavailable),
    ):
        _generator(api, clock).generate(seed_path, brand_path, PROMPT)
    assert len(api.creates) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "detail", ["input_image_1: unsupported", "input.safety_tolerance: must be <= 2"]
)
def test_client_errors_are_not_retried(seed_path: Path, brand_path: Path, detail: str) -> None:
    bad = Scripted(422, {"detail": detail})
    with (
        FakeReplicate(TOKEN, Scenario(create_responses=[bad])) as api,
        pytest.raises(GenerationError, match="HTTP 422") as info,
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    assert len(api.creates) == 1
    assert type(info.value) is GenerationError  # not a refusal, not "unavailable"
    assert detail in str(info.value)


# -- Replicate: failures ---------------------------------------------------------------------


def test_failed_prediction_raises_with_the_models_reason(seed_path: Path, brand_path: Path) -> None:
    scenario = Scenario(final_status="failed", error="CUDA out of memory")
    with (
        FakeReplicate(TOKEN, scenario) as api,
        pytest.raises(GenerationFailed, match="CUDA out of memory") as info,
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    assert info.value.provider_id == "pred0001"
    assert "pred0001" in str(info.value)
    assert api.downloads == []


def test_canceled_prediction_raises(seed_path: Path, brand_path: Path) -> None:
    with (
        FakeReplicate(TOKEN, Scenario(polls_until_done=2, final_status="canceled")) as api,
        pytest.raises(GenerationFailed, match="canceled"),
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)


@pytest.mark.parametrize(
    "error",
    [
        "NSFW content detected. Try running it again, or try a different prompt.",
        "The input or output was flagged as sensitive. Please try again with different "
        "inputs. (E005)",
    ],
)
def test_policy_refusal_gets_a_marketer_message(
    seed_path: Path, brand_path: Path, error: str
) -> None:
    with (
        FakeReplicate(TOKEN, Scenario(final_status="failed", error=error)) as api,
        pytest.raises(GenerationRefused, match="safety filter") as info,
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    assert isinstance(info.value, GenerationError)
    assert "different seed photo, brand image or prompt" in str(info.value)


def test_policy_refusal_at_creation(seed_path: Path, brand_path: Path) -> None:
    refusal = Scripted(422, {"detail": "Input image was flagged by content moderation"})
    with (
        FakeReplicate(TOKEN, Scenario(create_responses=[refusal])) as api,
        pytest.raises(GenerationRefused),
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)


def test_timeout_cancels_the_prediction(seed_path: Path, brand_path: Path) -> None:
    clock = FakeClock()
    with FakeReplicate(TOKEN, Scenario(polls_until_done=None)) as api:
        gen = _generator(api, clock, timeout_s=5.0)
        with pytest.raises(GenerationTimeout, match="longer than 5 s") as info:
            gen.generate(seed_path, brand_path, PROMPT)

    assert api.creates[0].headers["prefer"] == "wait=5"
    assert [c.path for c in api.cancels] == ["/v1/predictions/pred0001/cancel"]
    assert api.predictions["pred0001"].status == "canceled"
    assert info.value.provider_id == "pred0001"
    # It polled for exactly the budget, then stopped (the clock only moves when sleeping).
    assert sum(clock.sleeps) == pytest.approx(5.0)
    assert api.downloads == []


def test_bad_token_is_reported_without_retrying(seed_path: Path, brand_path: Path) -> None:
    with (
        FakeReplicate("r8_someOtherTokenEntirely") as api,
        pytest.raises(GenerationError, match="REPLICATE_API_TOKEN"),
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    assert len(api.creates) == 1


@pytest.mark.parametrize(
    ("output", "content_type"), [(b"<html>oops</html>", "text/html"), (b"", "image/png")]
)
def test_output_that_is_not_an_image_is_rejected(
    seed_path: Path, brand_path: Path, output: bytes, content_type: str
) -> None:
    scenario = Scenario(output=output, output_content_type=content_type)
    with (
        FakeReplicate(TOKEN, scenario) as api,
        pytest.raises(GenerationFailed, match="not a readable image"),
    ):
        _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)


def test_unreadable_input_fails_before_any_request(
    tmp_path: Path, seed_path: Path, brand_path: Path
) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    with FakeReplicate(TOKEN) as api:
        gen = _generator(api, FakeClock())
        with pytest.raises(GenerationError, match="seed image .* not a readable image"):
            gen.generate(not_an_image, brand_path, PROMPT)
        with pytest.raises(GenerationError, match="Could not read the brand image"):
            gen.generate(seed_path, tmp_path / "missing.png", PROMPT)
        with pytest.raises(GenerationError, match="prompt is empty"):
            gen.generate(seed_path, brand_path, "  ")
    assert api.requests == []


# -- Replicate: inputs and outputs -----------------------------------------------------------


def test_large_image_is_uploaded_through_the_files_api(tmp_path: Path, brand_path: Path) -> None:
    # Noise does not compress, so this PNG is well over the 1 MB data-URI limit.
    noise = random.Random(0).randbytes(640 * 640 * 3)
    big = _save(tmp_path / "big seed.png", Image.frombytes("RGB", (640, 640), noise))
    assert big.stat().st_size > 1_000_000

    with FakeReplicate(TOKEN) as api:
        _generator(api, FakeClock()).generate(big, brand_path, PROMPT)

    (upload,) = api.uploads
    assert upload.headers["authorization"] == f"Bearer {TOKEN}"
    ((file_id, (name, content_type, data)),) = api.files.items()
    assert (name, content_type, data) == ("big seed.png", "image/png", big.read_bytes())
    sent = api.creates[0].json()["input"]
    assert sent["input_image_1"] == f"https://api.replicate.com/v1/files/{file_id}"
    assert sent["input_image_2"].startswith("data:image/png;base64,")


def test_upload_is_retried_too(tmp_path: Path, brand_path: Path) -> None:
    seed = _save(tmp_path / "seed.png", _gradient((64, 64)))
    clock = FakeClock()
    busy = Scripted(503, {"detail": "unavailable"}, {"Retry-After": "2"})
    with FakeReplicate(TOKEN, Scenario(upload_responses=[busy])) as api:
        _generator(api, clock, inline_max_bytes=100).generate(seed, brand_path, PROMPT)
    # Seed: 503 then OK; brand: OK.
    assert len(api.uploads) == 3
    assert len(api.files) == 2
    assert clock.sleeps == [2.0]


def test_non_png_output_is_converted_to_png(seed_path: Path, brand_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 10, 10)).save(jpeg, format="JPEG")
    scenario = Scenario(output=jpeg.getvalue(), output_content_type="image/jpeg")
    with FakeReplicate(TOKEN, scenario) as api:
        result = _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    image = Image.open(io.BytesIO(result.png))
    assert (image.format, image.size) == ("PNG", (80, 60))


def test_output_on_another_host_is_fetched_without_the_token(
    seed_path: Path, brand_path: Path
) -> None:
    # "localhost" and "127.0.0.1" are different origins served by the same fake.
    scenario = Scenario(output_host="localhost", output_as_list=True)
    with FakeReplicate(TOKEN, scenario) as api:
        result = _generator(api, FakeClock()).generate(seed_path, brand_path, PROMPT)
    (download,) = api.downloads
    assert "authorization" not in download.headers
    assert result.png == scenario.output


def test_token_never_appears_in_errors_logs_or_reprs(
    seed_path: Path, brand_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # including httpx/httpcore wire logs
    scenarios = [
        # A server that echoes credentials back in its error details.
        Scenario(create_responses=[Scripted(401, {"detail": f"Bad token Bearer {TOKEN}"})]),
        Scenario(create_responses=[Scripted(400, {"detail": f"token {TOKEN} is malformed"})]),
        Scenario(final_status="failed", error=f"crashed while using {TOKEN}"),
        Scenario(create_responses=[Scripted(503, {"detail": TOKEN}, {"Retry-After": "1"})] * 9),
        Scenario(polls_until_done=None),
        Scenario(),
    ]
    texts: list[str] = []
    for scenario in scenarios:
        with FakeReplicate(TOKEN, scenario) as api:
            gen = _generator(api, FakeClock(), timeout_s=3.0)
            texts.append(repr(gen))
            try:
                gen.generate(seed_path, brand_path, PROMPT)
            except GenerationError as exc:
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    assert len(texts) > 10
    _assert_no_token(*texts, caplog.text, repr(_settings(api)))
    assert "[redacted]" in "".join(texts)


# -- configuration and factory ---------------------------------------------------------------


def test_settings_from_env() -> None:
    settings = load_settings(
        {
            "REPLICATE_API_TOKEN": TOKEN,
            "ADRAG_REPLICATE_MODEL": "acme/other",
            "ADRAG_REPLICATE_BASE_URL": "http://127.0.0.1:9/v1/",
            "ADRAG_GENERATION_TIMEOUT": "90",
            "ADRAG_REPLICATE_SAFETY_TOLERANCE": "1",
            "ADRAG_REPLICATE_MAX_ATTEMPTS": "2",
        }
    ).generator
    assert settings.replicate_api_token == TOKEN
    assert settings.replicate_model == "acme/other"
    assert settings.timeout_s == 90.0
    assert (settings.safety_tolerance, settings.max_attempts) == (1, 2)
    assert TOKEN not in repr(settings)

    defaults = load_settings({}).generator
    assert defaults.replicate_api_token is None
    assert defaults.replicate_model == "flux-kontext-apps/multi-image-kontext-max"
    assert defaults.timeout_s == 180.0
    assert defaults.aspect_ratio == "match_input_image"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADRAG_GENERATION_TIMEOUT": "soon"}, "ADRAG_GENERATION_TIMEOUT"),
        ({"ADRAG_GENERATION_TIMEOUT": "0"}, "ADRAG_GENERATION_TIMEOUT"),
        ({"ADRAG_GENERATOR": "dalle"}, "ADRAG_GENERATOR"),
        ({"ADRAG_REPLICATE_SAFETY_TOLERANCE": "9"}, "SAFETY_TOLERANCE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("https://api.replicate.com", "https://api.replicate.com"),
        ("https://api.replicate.com/v1/", "https://api.replicate.com"),
        ("http://proxy.internal/replicate/v1", "http://proxy.internal/replicate"),
    ],
)
def test_base_url_normalisation(raw: str | None, expected: str | None) -> None:
    assert normalise_base_url(raw) == expected


def test_base_url_with_v1_suffix_still_reaches_the_api(seed_path: Path, brand_path: Path) -> None:
    with FakeReplicate(TOKEN) as api:
        settings = _settings(api, replicate_base_url=f"{api.base_url}/v1/")
        ReplicateGenerator(settings).generate(seed_path, brand_path, PROMPT)
    assert api.creates[0].path.startswith("/v1/models/")


def test_parse_retry_after() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("whenever") is None
    assert parse_retry_after(None) is None


def test_factory_picks_backend_from_the_token() -> None:
    local = make_generator(GeneratorSettings())
    assert isinstance(local, LocalCompositor)
    remote = make_generator(GeneratorSettings(replicate_api_token=TOKEN))
    assert isinstance(remote, ReplicateGenerator)
    assert (remote.name, remote.model) == ("replicate", DEFAULT_REPLICATE_MODEL)
    assert isinstance(local, Generator) and isinstance(remote, Generator)

    forced = make_generator(GeneratorSettings(replicate_api_token=TOKEN, backend="local"))
    assert isinstance(forced, LocalCompositor)
    with pytest.raises(ValueError, match="REPLICATE_API_TOKEN"):
        make_generator(GeneratorSettings(), backend="replicate")


def test_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("ADRAG_GENERATOR", raising=False)
    assert isinstance(make_generator(), LocalCompositor)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    assert isinstance(make_generator(), ReplicateGenerator)


# -- local compositor ------------------------------------------------------------------------


def _pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def _mask(pixels: np.ndarray, color: tuple[int, int, int], tolerance: int = 8) -> np.ndarray:
    return np.abs(pixels.astype(int) - np.array(color)).max(axis=-1) <= tolerance


def test_local_output_is_a_square_png_with_the_brand_card_top_right(
    seed_path: Path, brand_path: Path
) -> None:
    gen = LocalCompositor()
    result = gen.generate(seed_path, brand_path, PROMPT)
    assert (result.generator, result.model, result.provider_id) == (
        "local",
        "adrag-local-compositor-v1",
        None,
    )
    pixels = _pixels(result.png)
    assert pixels.shape == (1024, 1024, 3)

    brand = _mask(pixels, MAGENTA)
    ys, xs = np.nonzero(brand)
    assert brand.sum() > 100 * 100  # the product is shown at a useful size...
    assert xs.min() > 512 and ys.max() < 512  # ...in the top-right corner
    # ...on a white card: a white frame just outside the product's bounding box.
    assert _mask(pixels[ys.min() - 5 : ys.min() - 2, xs.min() : xs.max()], (255, 255, 255)).all()


def test_local_output_is_deterministic_and_has_no_text(seed_path: Path, brand_path: Path) -> None:
    first = LocalCompositor().generate(seed_path, brand_path, PROMPT, seed=1).png
    again = LocalCompositor().generate(seed_path, brand_path, PROMPT, seed=2).png
    # Words are adrag's to draw (campaign creatives), never the picture's: a prompt with
    # another headline gives the same picture.
    other = LocalCompositor().generate(seed_path, brand_path, "Headline: Winter sale").png
    assert first == again == other


def test_local_respects_size_and_transparent_products(tmp_path: Path, seed_path: Path) -> None:
    cutout = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    cutout.paste(Image.new("RGBA", (80, 80), (*MAGENTA, 255)), (40, 40))
    brand = _save(tmp_path / "cutout.png", cutout)
    pixels = _pixels(LocalCompositor(size=(768, 512)).generate(seed_path, brand, PROMPT).png)
    assert pixels.shape == (512, 768, 3)
    story = LocalCompositor().generate(seed_path, brand, PROMPT, aspect_ratio="9:16").png
    assert _pixels(story).shape == (1024, 576, 3)
    ys, xs = np.nonzero(_mask(pixels, MAGENTA))
    # The transparent margin around the product shows the white card, not black.
    assert _mask(pixels[ys.min() - 10 : ys.min() - 2, xs.min() : xs.max()], (255, 255, 255)).all()


@pytest.mark.skipif(not PETS.is_dir(), reason="oxford-pets sample not available")
def test_local_with_real_photos() -> None:
    photos = sorted(PETS.glob("*.jpg"))[:2]
    result = LocalCompositor().generate(photos[0], photos[1], "Headline: Treats they'll love")
    assert _pixels(result.png).shape == (1024, 1024, 3)


def test_local_rejects_unreadable_inputs(tmp_path: Path, brand_path: Path) -> None:
    text = tmp_path / "seed.jpg"
    text.write_text("not a photo")
    with pytest.raises(GenerationError, match="seed image"):
        LocalCompositor().generate(text, brand_path, PROMPT)
    with pytest.raises(GenerationError, match="Could not read the seed image"):
        LocalCompositor().generate(tmp_path / "missing.jpg", brand_path, PROMPT)
