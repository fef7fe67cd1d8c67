"""The generator contract shared by every backend: what goes in, what comes out, what can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GeneratedImage:
    """One generated ad creative.

    ``png`` is always PNG-encoded, whatever the backend produced, so callers can write it to
    disk or a table without sniffing formats.
    """

    png: bytes = field(repr=False)
    generator: str
    model: str
    duration_s: float
    # The backend's own id for the job (a Replicate prediction id), so an ad can be traced back
    # to the provider's dashboard. ``None`` for backends that have no such thing.
    provider_id: str | None = None


@runtime_checkable
class Generator(Protocol):
    """Seed photo + brand image + prompt -> PNG ad creative."""

    name: str
    model: str

    def generate(
        self,
        seed_image: Path,
        brand_image: Path,
        prompt: str,
        *,
        seed: int | None = None,
        aspect_ratio: str | None = None,
    ) -> GeneratedImage:
        """``aspect_ratio`` (e.g. ``"4:5"``): the shape of the picture asked for; None for
        the backend's default. Campaign creatives ask once per ratio their placements need."""
        ...


class GenerationError(RuntimeError):
    """A generation did not produce an image.

    The message is written for the marketer using the app (what happened, what to do), and is
    guaranteed not to contain credentials. ``provider_id`` is the prediction id when one exists.
    """

    def __init__(self, message: str, *, provider_id: str | None = None) -> None:
        super().__init__(message)
        self.provider_id = provider_id


class GenerationTimeout(GenerationError):
    """The provider did not finish within the configured time budget (the job was canceled)."""


class GenerationRefused(GenerationError):
    """The provider's safety filter refused the inputs or the output."""


class GenerationFailed(GenerationError):
    """The model ran but failed, was canceled, or returned something that is not an image."""


class GenerationUnavailable(GenerationError):
    """The provider kept rejecting the request as overloaded / unreachable after retries."""


def read_input_image(path: Path, role: str) -> bytes:
    """Read an input image, turning a missing file into a message a marketer can act on."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise GenerationError(f"Could not read the {role} image {path}: {exc.strerror}.") from None
