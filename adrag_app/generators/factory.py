"""Choose the generator backend from the settings."""

from __future__ import annotations

import logging

from adrag_app.generators.base import Generator
from adrag_app.generators.local import LocalCompositor
from adrag_app.generators.replicate_generator import ReplicateGenerator
from adrag_assets.settings import GeneratorSettings, load_settings

log = logging.getLogger(__name__)


def make_generator(
    settings: GeneratorSettings | None = None, *, backend: str | None = None
) -> Generator:
    """Replicate when a token is configured, else the offline compositor.

    ``backend`` (or ``ADRAG_GENERATOR``) forces a choice: ``"local"`` keeps a demo offline even
    with a token in the environment; ``"replicate"`` fails loudly instead of silently falling
    back when the token is missing.
    """
    settings = settings or load_settings().generator
    choice = (backend or settings.backend).lower()
    if choice == "replicate" and not settings.has_replicate_token:
        raise ValueError("The Replicate generator was requested but REPLICATE_API_TOKEN is unset.")
    if choice == "local" or (choice == "auto" and not settings.has_replicate_token):
        log.info("Using the offline local compositor")
        return LocalCompositor()
    if choice not in ("auto", "replicate"):
        raise ValueError(f"Unknown generator backend {choice!r}; use auto, replicate or local.")
    log.info("Using Replicate model %s", settings.replicate_model)
    return ReplicateGenerator(settings)
