"""All of adrag's configuration, read from ``ADRAG_*`` environment variables.

This is the one place that knows the variable names and their defaults. Dagster resources,
the CLI and the app all start from :func:`load_settings`, so a script that exports the same
variables talks to the same volume, tables and index whatever entry point it uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ENCODER = "ViT-B-32:laion2b_s34b_b79k"
# The offline stand-in for DEFAULT_ENCODER: the same architecture with fixed random weights.
OFFLINE_ENCODER = "random:ViT-B-32"
INDEX_ALIAS = "adrag_images"
# Variables whose values are secrets: never logged, traced, stored or shown (adrag_assets.redact).
SECRET_VARS = ("REPLICATE_API_TOKEN", "ADRAG_MILVUS_TOKEN", "ADRAG_LLM_API_KEY", "OPENAI_API_KEY")


@dataclass(frozen=True)
class Settings:
    home: Path
    volume: Path
    encoder: str
    precision: str  # "fp32", "bf16" or "auto"
    batch_size: int
    device: str
    milvus_uri: str
    milvus_token: str = field(repr=False)
    keep_old_collections: bool = False
    sensor_interval: int = 15
    search_mode: str = "hybrid"  # "hybrid", "dense" or "text"
    hybrid_ranker: str = "weighted"  # "weighted" or "rrf"
    hybrid_weights: tuple[float, float] = (0.5, 0.5)  # dense, text
    index_alias: str = INDEX_ALIAS

    @property
    def tables_dir(self) -> Path:
        return self.home / "tables"

    @property
    def raw_dir(self) -> Path:
        return self.volume / "raw"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    home = Path(env.get("ADRAG_HOME") or ".adrag").expanduser().resolve()
    volume = Path(env.get("ADRAG_VOLUME") or home / "volume").expanduser().resolve()
    milvus_uri = env.get("ADRAG_MILVUS_URI") or str(home / "milvus" / "adrag.db")
    return Settings(
        home=home,
        volume=volume,
        encoder=env.get("ADRAG_ENCODER") or DEFAULT_ENCODER,
        precision=env.get("ADRAG_PRECISION") or "auto",
        batch_size=int(env.get("ADRAG_BATCH_SIZE") or 32),
        device=env.get("ADRAG_DEVICE") or "cpu",
        milvus_uri=milvus_uri,
        milvus_token=env.get("ADRAG_MILVUS_TOKEN") or "",
        keep_old_collections=(env.get("ADRAG_KEEP_OLD_COLLECTIONS") or "").lower()
        in ("1", "true", "yes"),
        sensor_interval=int(env.get("ADRAG_SENSOR_INTERVAL") or 15),
        search_mode=_choice(env, "ADRAG_SEARCH_MODE", "hybrid", ("hybrid", "dense", "text")),
        hybrid_ranker=_choice(env, "ADRAG_HYBRID_RANKER", "weighted", ("weighted", "rrf")),
        hybrid_weights=_weights(env.get("ADRAG_HYBRID_WEIGHTS") or "0.5,0.5"),
    )


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """The values of the SECRET_VARS that are set (long enough to be real secrets)."""
    env = os.environ if env is None else env
    # Short values would redact innocent substrings; real tokens are long.
    return [v for v in ((env.get(n) or "").strip() for n in SECRET_VARS) if len(v) >= 8]


def _choice(env, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _weights(text: str) -> tuple[float, float]:
    try:
        dense, lexical = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(
            f"ADRAG_HYBRID_WEIGHTS={text!r}: expected two numbers, dense and text, e.g. 0.5,0.5"
        ) from None
    return dense, lexical
