"""The one place that keeps secrets out of what adrag writes or shows.

Everything that leaves a process passes through :func:`redact`: ad sidecars and file names,
Dagster metadata and log messages, MLflow traces, CLI errors. It replaces

* the values of the configured secrets (``settings.SECRET_VARS``: ``REPLICATE_API_TOKEN``,
  ``ADRAG_MILVUS_TOKEN``, ...),
* token-shaped strings, even when no such variable is set here (a token pasted into a
  description or a chat message): Replicate's ``r8_…`` tokens and OpenAI-style ``sk-…`` keys,
* the ``user:password@`` part of URIs,

with ``[redacted]`` (``***`` for URI credentials, so the URI still reads as one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from adrag_assets.settings import secret_values

REDACTED = "[redacted]"
TOKEN_SHAPED = re.compile(r"(?<![A-Za-z0-9])(?:r8_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{20,})")
_URI_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact_text(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """``text`` without secrets (the configured ones and ``extra_secrets``) or token shapes."""
    for secret in [*secret_values(), *(s for s in extra_secrets if s and len(s) >= 8)]:
        text = text.replace(secret, REDACTED)
    text = TOKEN_SHAPED.sub(REDACTED, text)
    return _URI_CREDENTIALS.sub("***@", text)


def redact(value: Any, extra_secrets: Iterable[str] = ()) -> Any:
    """``value`` with every string in it redacted: str, Path, and mappings/lists of them.

    Mappings come back as dicts and sequences as lists (keys are redacted too); other values
    are returned as they are.
    """
    extra = list(extra_secrets)
    if isinstance(value, str):
        return redact_text(value, extra)
    if isinstance(value, Path):
        return redact_text(str(value), extra)
    if isinstance(value, Mapping):
        return {redact_text(str(k), extra): redact(v, extra) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, extra) for v in value]
    return value


def has_secret(text: str) -> bool:
    """Whether :func:`redact_text` would change ``text``."""
    return redact_text(text) != text
