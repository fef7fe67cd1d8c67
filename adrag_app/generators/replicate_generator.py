"""FLUX Kontext multi-image on Replicate, behind the :class:`Generator` interface.

What the ``replicate`` client (1.0.x) does not do for us, and this module does:

* It never retries a POST, so prediction creation and file uploads are retried here (tenacity)
  on 429 / 5xx / refused connections, honouring ``Retry-After``.
* ``Prefer: wait`` returns after at most 60 s, possibly with an unfinished prediction; we then
  poll, bound the whole job by ``timeout_s`` and cancel it on Replicate when time runs out so a
  forgotten job does not keep running (and billing).
* It raises raw API errors; here they become :class:`GenerationError` subclasses whose messages a
  marketer can act on, scrubbed of the API token.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import httpx
import replicate
from PIL import Image, UnidentifiedImageError
from replicate.exceptions import ReplicateError
from replicate.prediction import Prediction
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    wait_exponential,
)

from adrag_app.generators.base import (
    GeneratedImage,
    GenerationError,
    GenerationFailed,
    GenerationRefused,
    GenerationTimeout,
    GenerationUnavailable,
    read_input_image,
)
from adrag_assets.redact import redact_text
from adrag_assets.settings import GeneratorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
# Replicate holds a `Prefer: wait` request open for at most 60 s.
MAX_PREFER_WAIT_S = 60
# Formats FLUX Kontext reads directly; anything else Pillow can open is re-encoded as PNG.
_ACCEPTED_INPUT_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# How safety-filter refusals read in Replicate/BFL error text (e.g. "... flagged as sensitive
# (E005)", "NSFW content detected"). Not bare "safety": a 422 about the `safety_tolerance`
# input is a configuration error, not a refusal.
_POLICY_REFUSAL = re.compile(
    r"nsfw|flagged|(?<!case-)sensitive|safety (?:filter|system|check)|moderation"
    r"|content policy|\bE005\b",
    re.I,
)


def _is_transient_status(status: int | None) -> bool:
    """Too Many Requests or any server-side error: the same request may well succeed later."""
    return status is not None and (status == 429 or status >= 500)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def normalise_base_url(base_url: str | None) -> str | None:
    """The client appends ``/v1/...`` itself, so a base URL ending in ``/v1`` must lose it."""
    if not base_url:
        return None
    base_url = base_url.strip().rstrip("/")
    return base_url.removesuffix("/v1") or None


class _TransientError(Exception):
    """One attempt that is worth repeating: 429, 5xx, or a connection that never opened."""

    def __init__(self, summary: str, retry_after: float | None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.retry_after = retry_after


class ReplicateGenerator:
    """Generate an ad with a FLUX Kontext multi-image model hosted on Replicate."""

    name = "replicate"

    def __init__(
        self,
        settings: GeneratorSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``sleep`` and ``clock`` are injectable so tests can run backoff and timeouts
        without waiting for them."""
        if not settings.replicate_api_token:
            raise ValueError("ReplicateGenerator needs REPLICATE_API_TOKEN")
        self.model = settings.replicate_model
        self._settings = settings
        self._token = settings.replicate_api_token
        self._sleep = sleep
        self._clock = clock
        # ReplicateError keeps only the problem-details body, not the response headers, so the
        # Retry-After of a failed attempt is picked up here. httpx runs response hooks in the
        # calling thread, hence thread-local: one generator may serve several app threads.
        self._last_response = threading.local()
        self._client = replicate.Client(
            api_token=self._token,
            base_url=normalise_base_url(settings.replicate_base_url),
            event_hooks={"response": [self._remember_retry_after]},
        )
        self._backoff = wait_exponential(
            multiplier=settings.backoff_initial_s,
            min=settings.backoff_initial_s,
            max=settings.backoff_max_s,
        )

    def __repr__(self) -> str:
        return f"ReplicateGenerator(model={self.model!r})"

    # -- public -----------------------------------------------------------------------------

    def generate(
        self,
        seed_image: Path,
        brand_image: Path,
        prompt: str,
        *,
        seed: int | None = None,
        aspect_ratio: str | None = None,
    ) -> GeneratedImage:
        """Run one prediction and return its image as PNG, or raise a GenerationError.
        ``aspect_ratio``: Kontext's ``aspect_ratio`` input (default: the configured one)."""
        if not prompt.strip():
            raise GenerationError("The prompt is empty; describe the ad to generate.")
        started = self._clock()
        deadline = started + self._settings.timeout_s
        inputs: dict[str, Any] = {
            "prompt": prompt,
            "input_image_1": self._image_reference(Path(seed_image), "seed", deadline),
            "input_image_2": self._image_reference(Path(brand_image), "brand", deadline),
            "aspect_ratio": aspect_ratio or self._settings.aspect_ratio,
            "output_format": "png",
            "safety_tolerance": self._settings.safety_tolerance,
        }
        if seed is not None:
            inputs["seed"] = seed

        prediction = self._create_prediction(inputs, deadline)
        log.info("Replicate prediction %s created (status %s)", prediction.id, prediction.status)
        prediction = self._wait_until_finished(prediction, deadline)
        self._raise_unless_succeeded(prediction)
        png = self._download_png(_output_url(prediction), prediction.id, deadline)
        duration = self._clock() - started
        log.info("Replicate prediction %s succeeded in %.1f s", prediction.id, duration)
        return GeneratedImage(
            png=png,
            generator=self.name,
            model=self.model,
            duration_s=duration,
            provider_id=prediction.id,
        )

    # -- inputs -----------------------------------------------------------------------------

    def _image_reference(self, path: Path, role: str, deadline: float) -> str:
        """A data URI for small images, else the URL of an upload through the files API.

        Done by hand rather than by passing file objects to the client, which would upload
        every image (its default) or inline every image (``file_encoding_strategy``).
        """
        data = read_input_image(path, role)
        data, mime = _model_ready_image(data, path, role)
        if len(data) <= self._settings.inline_max_bytes:
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        suffix = mime.split("/", 1)[1].replace("jpeg", "jpg")
        uploaded = self._with_retries(
            f"upload of the {role} image",
            lambda: self._client.files.create(
                io.BytesIO(data), filename=f"{path.stem}.{suffix}", content_type=mime
            ),
            deadline,
        )
        log.info("Uploaded the %s image (%d bytes) as file %s", role, len(data), uploaded.id)
        return uploaded.urls["get"]

    # -- prediction lifecycle ---------------------------------------------------------------

    def _create_prediction(self, inputs: dict[str, Any], deadline: float) -> Prediction:
        model = self._settings.replicate_model

        def create() -> Prediction:
            # Ask Replicate to hold the request until the image is ready, but never past our
            # own deadline; `wait` must be a whole number of seconds in [1, 60].
            wait = max(1, min(MAX_PREFER_WAIT_S, int(deadline - self._clock())))
            if ":" in model:
                # owner/name:version (e.g. a fine-tune) goes through /v1/predictions.
                return self._client.predictions.create(
                    version=model.split(":", 1)[1], input=inputs, wait=wait
                )
            # Not predictions.create(model=...): in replicate 1.0.7 it drops `wait` before
            # delegating here, silently turning off `Prefer: wait`.
            return self._client.models.predictions.create(model=model, input=inputs, wait=wait)

        return self._with_retries("prediction request", create, deadline)

    def _wait_until_finished(self, prediction: Prediction, deadline: float) -> Prediction:
        if prediction.status in TERMINAL_STATUSES:
            return prediction
        poller = Retrying(
            retry=(
                retry_if_result(lambda p: p.status not in TERMINAL_STATUSES)
                | retry_if_exception(_is_transient_poll_error)
            ),
            stop=lambda _: self._clock() >= deadline,
            wait=lambda _: min(self._settings.poll_interval_s, max(0.0, deadline - self._clock())),
            sleep=self._sleep,
            # Out of time: hand back None rather than tenacity's RetryError.
            retry_error_callback=lambda _: None,
        )
        finished: Prediction | None = None
        try:
            finished = poller(self._client.predictions.get, prediction.id)
        except ReplicateError as exc:
            raise self._api_error(exc, prediction.id) from None
        finally:
            # Whatever stopped us (deadline, API error, Ctrl-C), don't leave a paid job running.
            if finished is None:
                self._cancel(prediction.id)
        if finished is None:
            raise GenerationTimeout(
                f"The image took longer than {self._settings.timeout_s:g} s, so it was canceled "
                f"(Replicate prediction {prediction.id}). Please try again; if it keeps "
                "happening, raise ADRAG_GENERATION_TIMEOUT.",
                provider_id=prediction.id,
            )
        return finished

    def _cancel(self, prediction_id: str) -> None:
        try:
            self._client.predictions.cancel(prediction_id)
            log.warning("Canceled Replicate prediction %s", prediction_id)
        except (ReplicateError, httpx.HTTPError) as exc:
            log.warning(
                "Could not cancel Replicate prediction %s: %s",
                prediction_id,
                self._redact(_describe(exc)),
            )

    def _raise_unless_succeeded(self, prediction: Prediction) -> None:
        if prediction.status == "succeeded":
            return
        reason = self._redact(str(prediction.error or "")).strip()
        log.warning("Replicate prediction %s %s: %s", prediction.id, prediction.status, reason)
        if _POLICY_REFUSAL.search(reason):
            raise GenerationRefused(_refusal_message(prediction.id), provider_id=prediction.id)
        if prediction.status == "canceled":
            raise GenerationFailed(
                f"The image was canceled on Replicate before it finished (prediction "
                f"{prediction.id}). Please try again.",
                provider_id=prediction.id,
            )
        raise GenerationFailed(
            f"The image model failed: {reason or 'no reason given'} (Replicate prediction "
            f"{prediction.id}). Please try again, or try another seed photo.",
            provider_id=prediction.id,
        )

    # -- output -----------------------------------------------------------------------------

    def _download_png(self, url: str, prediction_id: str, deadline: float) -> bytes:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            data = base64.b64decode(payload) if ";base64" in header else unquote_to_bytes(payload)
        else:
            data = self._fetch(url, prediction_id, deadline)
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                if image.format == "PNG":
                    return data
                # We asked for PNG, but models and proxies do not always comply.
                buffer = io.BytesIO()
                keep = image.mode in ("RGB", "RGBA", "L", "LA")
                (image if keep else image.convert("RGBA")).save(buffer, format="PNG")
                return buffer.getvalue()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            raise GenerationFailed(
                f"Replicate returned a file that is not a readable image (prediction "
                f"{prediction_id}). Please try again.",
                provider_id=prediction_id,
            ) from None

    def _fetch(self, url: str, prediction_id: str, deadline: float) -> bytes:
        # The client's own httpx client (pool, proxies, GET retries on 429/503/504), which is
        # what replicate's FileOutput.read uses too.
        http = self._client._client
        # The job is done and paid for, so allow the download a little time even at the deadline.
        remaining = max(15.0, deadline - self._clock())
        request = http.build_request("GET", url, timeout=httpx.Timeout(10.0, read=remaining))
        target, api = request.url, http.base_url
        if (target.scheme, target.host, target.port) != (api.scheme, api.host, api.port):
            # Output usually lives on a CDN (replicate.delivery); the API token has no business
            # there. FileOutput.read would send it; we do not.
            request.headers.pop("Authorization", None)
        try:
            response = http.send(request, follow_redirects=True)
            response.raise_for_status()
            return response.content
        except httpx.HTTPError as exc:
            reason = self._redact(_describe(exc))
            raise GenerationFailed(
                f"The image was generated but could not be downloaded ({reason}). It stays "
                f"available on Replicate for about an hour as prediction {prediction_id}.",
                provider_id=prediction_id,
            ) from None

    # -- retries and errors -----------------------------------------------------------------

    def _remember_retry_after(self, response: httpx.Response) -> None:
        self._last_response.retry_after = parse_retry_after(response.headers.get("Retry-After"))

    def _attempt(self, call: Callable[[], T]) -> T:
        """Run one attempt, classifying failures into retryable and final."""
        self._last_response.retry_after = None
        try:
            return call()
        except ReplicateError as exc:
            if _is_transient_status(exc.status):
                raise _TransientError(
                    f"HTTP {exc.status}", self._last_response.retry_after
                ) from None
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The request never reached Replicate, so repeating it cannot create a duplicate job.
            raise _TransientError(type(exc).__name__, None) from None

    def _retry_delay(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _TransientError) and error.retry_after is not None:
            return error.retry_after
        return self._backoff(state)

    def _with_retries(self, what: str, call: Callable[[], T], deadline: float) -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(_TransientError),
            stop=stop_any(
                stop_after_attempt(self._settings.max_attempts),
                # Waiting past the deadline is pointless: give up now with a clear message.
                lambda state: self._clock() + self._retry_delay(state) >= deadline,
            ),
            wait=self._retry_delay,
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "Replicate %s attempt %d failed (%s); retrying in %.2f s",
                what,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        try:
            return retrying(self._attempt, call)
        except _TransientError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise GenerationUnavailable(
                f"Replicate is busy or unreachable right now ({exc.summary} on the {what}, "
                f"{attempts} attempt{'s' if attempts != 1 else ''}). Please try again in a few "
                "minutes.",
            ) from None
        except ReplicateError as exc:
            raise self._api_error(exc, None) from None
        except httpx.TimeoutException:
            raise GenerationTimeout(
                f"Replicate did not answer the {what} in time. Please try again."
            ) from None
        except httpx.HTTPError as exc:
            raise GenerationUnavailable(
                f"Could not talk to Replicate ({self._redact(_describe(exc))}). Please try again."
            ) from None

    def _api_error(self, exc: ReplicateError, prediction_id: str | None) -> GenerationError:
        """A final (non-retryable) API error as a marketer-readable GenerationError."""
        detail = self._redact(str(exc.detail or exc.title or "")).strip()
        log.warning("Replicate API error HTTP %s: %s", exc.status, detail)
        if _POLICY_REFUSAL.search(detail):
            return GenerationRefused(_refusal_message(prediction_id), provider_id=prediction_id)
        known = {
            401: "Replicate did not accept the API token. Check REPLICATE_API_TOKEN.",
            402: "The Replicate account has run out of credit; ask whoever owns it to top up.",
            403: f"The Replicate account may not run {self.model}.",
            404: f"Replicate has no model {self.model}; check ADRAG_REPLICATE_MODEL.",
        }
        message = known.get(exc.status or 0) or (
            f"Replicate rejected the request (HTTP {exc.status}): {detail or 'no details'}."
        )
        return GenerationError(message, provider_id=prediction_id)

    def _redact(self, text: str) -> str:
        # This generator's token may come from its settings rather than the environment.
        return redact_text(text, [self._token] if self._token else [])


def _is_transient_poll_error(error: BaseException) -> bool:
    # Polling is a GET: safe to repeat on any network hiccup until the deadline.
    if isinstance(error, ReplicateError):
        return _is_transient_status(error.status)
    return isinstance(error, httpx.TransportError)


def _describe(error: BaseException) -> str:
    if isinstance(error, ReplicateError):
        return f"HTTP {error.status}: {error.detail or error.title or ''}".strip()
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__


def _refusal_message(prediction_id: str | None) -> str:
    where = f" (Replicate prediction {prediction_id})" if prediction_id else ""
    return (
        f"The image service's safety filter declined this ad{where}. Try a different seed "
        "photo, brand image or prompt wording."
    )


def _output_url(prediction: Prediction) -> str:
    output = prediction.output
    if isinstance(output, list):
        output = output[0] if output else None
    if not isinstance(output, str) or not output:
        raise GenerationFailed(
            f"Replicate finished without returning an image (prediction {prediction.id}). "
            "Please try again.",
            provider_id=prediction.id,
        )
    return output


def _model_ready_image(data: bytes, path: Path, role: str) -> tuple[bytes, str]:
    """Check an input is an image (fail before paying for a prediction) and get its MIME type."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            if image_format in _ACCEPTED_INPUT_FORMATS:
                image.verify()
                return data, _ACCEPTED_INPUT_FORMATS[image_format]
            image.load()
            buffer = io.BytesIO()
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, "PNG")
            return buffer.getvalue(), "image/png"
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise GenerationError(f"The {role} image {path} is not a readable image file.") from None
