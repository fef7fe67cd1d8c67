"""Generator configuration, read once from the environment.

Only ``REPLICATE_API_TOKEN`` keeps Replicate's own name (it is what every Replicate tool and
doc uses); everything else is ``ADRAG_*`` like the rest of the project.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_REPLICATE_MODEL = "flux-kontext-apps/multi-image-kontext-max"
BACKENDS = ("auto", "replicate", "local")


@dataclass(frozen=True)
class GeneratorSettings:
    # repr=False: settings objects end up in logs and tracebacks; the token must not.
    replicate_api_token: str | None = field(default=None, repr=False)
    backend: str = "auto"
    replicate_model: str = DEFAULT_REPLICATE_MODEL
    replicate_base_url: str | None = None
    timeout_s: float = 180.0
    aspect_ratio: str = "match_input_image"
    safety_tolerance: int = 2
    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    poll_interval_s: float = 1.0
    # Replicate accepts data URIs for small inputs; above ~1 MB its docs ask for an uploaded file.
    inline_max_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"ADRAG_GENERATOR must be one of {', '.join(BACKENDS)}")
        if self.timeout_s <= 0:
            raise ValueError("ADRAG_GENERATION_TIMEOUT must be positive")
        if self.max_attempts < 1:
            raise ValueError("ADRAG_REPLICATE_MAX_ATTEMPTS must be at least 1")
        # FLUX Kontext takes 0 (strict) to 6, but caps image-editing requests at 2; let the
        # provider report that cap so another model can be configured without code changes.
        if not 0 <= self.safety_tolerance <= 6:
            raise ValueError("ADRAG_REPLICATE_SAFETY_TOLERANCE must be between 0 and 6")

    @property
    def has_replicate_token(self) -> bool:
        return bool(self.replicate_api_token)


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a {kind.__name__}, got {raw!r}") from None


def load_generator_settings(env: Mapping[str, str] | None = None) -> GeneratorSettings:
    """Read the generator settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    defaults = GeneratorSettings()
    prefix = "ADRAG_REPLICATE_"
    return GeneratorSettings(
        replicate_api_token=(env.get("REPLICATE_API_TOKEN") or "").strip() or None,
        backend=(env.get("ADRAG_GENERATOR") or defaults.backend).strip().lower(),
        replicate_model=env.get("ADRAG_REPLICATE_MODEL") or defaults.replicate_model,
        replicate_base_url=env.get("ADRAG_REPLICATE_BASE_URL") or None,
        timeout_s=_number(env, "ADRAG_GENERATION_TIMEOUT", defaults.timeout_s),
        aspect_ratio=env.get("ADRAG_REPLICATE_ASPECT_RATIO") or defaults.aspect_ratio,
        safety_tolerance=int(
            _number(env, f"{prefix}SAFETY_TOLERANCE", defaults.safety_tolerance, int)
        ),
        max_attempts=int(_number(env, f"{prefix}MAX_ATTEMPTS", defaults.max_attempts, int)),
        backoff_initial_s=_number(env, f"{prefix}BACKOFF_INITIAL", defaults.backoff_initial_s),
        backoff_max_s=_number(env, f"{prefix}BACKOFF_MAX", defaults.backoff_max_s),
        poll_interval_s=_number(env, f"{prefix}POLL_INTERVAL", defaults.poll_interval_s),
    )
