"""All of adrag's configuration: the one module that reads the environment.

Every ``ADRAG_*`` variable (and Replicate's ``REPLICATE_API_TOKEN``, Dagster's ``DAGSTER_HOME``)
is a field of a frozen pydantic model here, named by its ``validation_alias``.
:func:`load_settings` validates the process environment, or any mapping, into :class:`Settings`:
the core fields plus the sections ``generator``, ``llm``, ``tracing`` and ``app``. Bad values
raise one :class:`SettingsError` with a line per bad variable that never echoes a secret.

Plain pydantic models rather than pydantic-settings: pydantic-settings reads ``os.environ``
only, while tests and child processes hand over a mapping, and "an empty value means the
default" is one line of ours here instead of a settings source to customise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

DEFAULT_ENCODER = "ViT-B-32:laion2b_s34b_b79k"
# The offline stand-in for DEFAULT_ENCODER: the same architecture with fixed random weights.
OFFLINE_ENCODER = "random:ViT-B-32"
INDEX_ALIAS = "adrag_images"
DEFAULT_REPLICATE_MODEL = "flux-kontext-apps/multi-image-kontext-max"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
DEFAULT_EXPERIMENT = "adrag"


# The object stores both the volume (obstore) and the Delta tables (deltalake) reach through
# the same Rust object_store crate, configured by the provider's standard variables.
OBJECT_STORE_SCHEMES = ("s3", "gs", "az")


def object_store_url(value: str) -> str:
    """``scheme://bucket[/prefix]`` for a supported object store, trailing slashes dropped;
    ValueError naming what is accepted otherwise."""
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in OBJECT_STORE_SCHEMES:
        # Taken as a folder, "ftp://x" would be a local path that holds nothing, and an
        # ingest would quietly index nothing: say so instead.
        raise ValueError(
            f"object-store URLs must start with s3://, gs:// or az://, not {scheme}://; "
            "or give a local or mounted folder"
        )
    bucket, _, prefix = rest.strip("/").partition("/")
    if len(bucket) < 3 or ".." in prefix.split("/"):
        raise ValueError(f"expected {scheme}://BUCKET/PREFIX with a bucket name of 3+ characters")
    return f"{scheme.lower()}://{bucket}" + (f"/{prefix.strip('/')}" if prefix.strip("/") else "")


class SettingsError(ValueError):
    """Bad configuration: one line per bad variable, ``NAME='value': what was expected``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def __reduce__(self) -> tuple[type[SettingsError], tuple[list[str]]]:
        return type(self), (self.problems,)


class _Section(BaseModel):
    # Frozen: settings are shared between threads and runs; change a copy with model_copy().
    # By name or by variable: code and tests build sections with keywords, load_settings from
    # the environment. Inputs stay out of pydantic's own messages: they may be secrets.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,
    )


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _weights(value: Any) -> Any:
    if isinstance(value, str):
        parts = value.split(",")
        try:
            if len(parts) == 2:
                return tuple(float(p) for p in parts)
        except ValueError:
            pass
        raise PydanticCustomError("weights", "expected two numbers, dense and text, e.g. 0.5,0.5")
    return value


Precision = Annotated[Literal["fp32", "bf16", "fp16", "auto"], BeforeValidator(_lower)]
SearchMode = Annotated[Literal["hybrid", "dense", "text"], BeforeValidator(_lower)]
Ranker = Annotated[Literal["weighted", "rrf"], BeforeValidator(_lower)]
Backend = Annotated[Literal["auto", "replicate", "local"], BeforeValidator(_lower)]
Weights = Annotated[tuple[float, float], BeforeValidator(_weights)]
LlmRole = Annotated[Literal["agent", "planner"], BeforeValidator(_lower)]


class GeneratorSettings(_Section):
    """How ads are generated. ``REPLICATE_API_TOKEN`` keeps Replicate's own name (what every
    Replicate tool and doc uses); everything else is ``ADRAG_*``."""

    # repr=False: settings end up in logs and tracebacks; the token must not.
    replicate_api_token: str | None = Field(
        None, repr=False, validation_alias="REPLICATE_API_TOKEN"
    )
    backend: Backend = Field("auto", validation_alias="ADRAG_GENERATOR")
    replicate_model: str = Field(DEFAULT_REPLICATE_MODEL, validation_alias="ADRAG_REPLICATE_MODEL")
    replicate_base_url: str | None = Field(None, validation_alias="ADRAG_REPLICATE_BASE_URL")
    timeout_s: float = Field(180.0, gt=0, validation_alias="ADRAG_GENERATION_TIMEOUT")
    aspect_ratio: str = Field("match_input_image", validation_alias="ADRAG_REPLICATE_ASPECT_RATIO")
    # FLUX Kontext takes 0 (strict) to 6, but caps image-editing requests at 2; let the
    # provider report that cap so another model can be configured without code changes.
    safety_tolerance: int = Field(
        2, ge=0, le=6, validation_alias="ADRAG_REPLICATE_SAFETY_TOLERANCE"
    )
    max_attempts: int = Field(5, ge=1, validation_alias="ADRAG_REPLICATE_MAX_ATTEMPTS")
    backoff_initial_s: float = Field(1.0, ge=0, validation_alias="ADRAG_REPLICATE_BACKOFF_INITIAL")
    backoff_max_s: float = Field(30.0, ge=0, validation_alias="ADRAG_REPLICATE_BACKOFF_MAX")
    poll_interval_s: float = Field(1.0, ge=0, validation_alias="ADRAG_REPLICATE_POLL_INTERVAL")
    # Replicate accepts data URIs for small inputs; above ~1 MB its docs ask for an uploaded file.
    inline_max_bytes: int = 1_000_000

    @property
    def has_replicate_token(self) -> bool:
        return bool(self.replicate_api_token)


class LlmSettings(_Section):
    """An OpenAI-compatible chat endpoint; unused unless URL and model are set. ``role``:
    ``agent`` (the model drives the conversation through the tool, and plans) or ``planner``
    (the model only proposes pet descriptions; the rule-driven agent talks)."""

    base_url: str = Field("", validation_alias="ADRAG_LLM_BASE_URL")
    model: str = Field("", validation_alias="ADRAG_LLM_MODEL")
    api_key: str = Field("", repr=False, validation_alias="ADRAG_LLM_API_KEY")
    timeout_s: float = Field(20.0, gt=0, validation_alias="ADRAG_LLM_TIMEOUT")
    role: LlmRole = Field("agent", validation_alias="ADRAG_LLM_ROLE")

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    @property
    def drives_agent(self) -> bool:
        return self.configured and self.role == "agent"


class TracingSettings(_Section):
    """Where MLflow traces go. :class:`Settings` fills in the default store under its home."""

    enabled: bool = Field(True, validation_alias="ADRAG_TRACING")
    tracking_uri: str = Field(validation_alias="ADRAG_MLFLOW_TRACKING_URI")
    experiment: str = Field(DEFAULT_EXPERIMENT, validation_alias="ADRAG_MLFLOW_EXPERIMENT")


class AppSettings(_Section):
    """The marketers' Streamlit app."""

    dagster_url: str = Field(DEFAULT_DAGSTER_URL, validation_alias="ADRAG_DAGSTER_URL")
    max_upload_mb: int = Field(10, gt=0, validation_alias="ADRAG_MAX_UPLOAD_MB")
    # A chat message longer than this is refused before anything reads it (app and `adrag chat`).
    max_message_chars: int = Field(2000, gt=0, validation_alias="ADRAG_MAX_MESSAGE_CHARS")
    # Who asks, when nobody signs in (laptop mode); a signed-in user replaces it.
    user: str = Field("", validation_alias="ADRAG_APP_USER")
    # Roles from this ID-token claim (a role name or a list of them); empty: from the access
    # file in the volume (campaigns/access.yaml). Used only with sign-in ([auth] configured).
    roles_claim: str = Field("", validation_alias="ADRAG_ROLES_CLAIM")
    # Paid generations (model calls) a day: per user, and for the whole brand; 0: no limit.
    generations_per_day: int = Field(0, ge=0, validation_alias="ADRAG_GENERATIONS_PER_DAY")
    brand_generations_per_day: int = Field(
        0, ge=0, validation_alias="ADRAG_BRAND_GENERATIONS_PER_DAY"
    )

    @field_validator("dagster_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    def asset_url(self, asset: str = "ad_creatives") -> str:
        return f"{self.dagster_url}/assets/{asset}"


def _cron(value: Any) -> Any:
    if isinstance(value, str) and len(value.split()) != 5:
        raise PydanticCustomError("cron", "expected a cron schedule of 5 fields, e.g. 0 3 * * *")
    return value


class MaintenanceSettings(_Section):
    """Delta maintenance (:mod:`adrag_assets.tables_maintenance`): when, and what it keeps."""

    cron: Annotated[str, BeforeValidator(_cron)] = Field(
        "0 3 * * *", validation_alias="ADRAG_MAINTENANCE_CRON"
    )
    # Removed files kept for readers and time travel; change-feed consumers get more.
    retention_hours: int = Field(0, ge=0, validation_alias="ADRAG_MAINTENANCE_RETENTION_HOURS")
    max_retention_hours: int = Field(
        168, gt=0, validation_alias="ADRAG_MAINTENANCE_MAX_RETENTION_HOURS"
    )
    after_commits: int = Field(50, gt=0, validation_alias="ADRAG_MAINTENANCE_AFTER_COMMITS")


class Settings(_Section):
    """The core settings (state, volume, encoder, Milvus, search) and the other sections."""

    home: Path = Field(Path(".adrag"), validation_alias="ADRAG_HOME", validate_default=True)
    # None here means "under home": one ADRAG_HOME moves every piece of state at once.
    # A local folder is a resolved Path; an object-store URL (s3://, gs://, az://) stays a
    # str, so code that still treats it as a folder fails loudly instead of reading nothing.
    volume: Path | str = Field(None, validation_alias="ADRAG_VOLUME", validate_default=True)
    tables_dir: Path | str = Field(None, validation_alias="ADRAG_TABLES", validate_default=True)
    encoder: str = Field(DEFAULT_ENCODER, validation_alias="ADRAG_ENCODER")
    precision: Precision = Field("auto", validation_alias="ADRAG_PRECISION")
    batch_size: int = Field(32, gt=0, validation_alias="ADRAG_BATCH_SIZE")
    device: str = Field("cpu", validation_alias="ADRAG_DEVICE")
    # Long side of the rendition ingest keeps per photo (what the model reads): above every
    # supported model input (224..448) with margin.
    rendition_px: int = Field(512, ge=64, le=4096, validation_alias="ADRAG_RENDITION_PX")
    # on: `images` also keeps each original's bytes (a lakehouse copy); off: they stay in
    # the volume only.
    store_originals: bool = Field(False, validation_alias="ADRAG_STORE_ORIGINALS")
    # Threads decoding photos at ingest (Pillow releases the GIL); 0: one per CPU.
    decode_workers: int = Field(0, ge=0, le=64, validation_alias="ADRAG_DECODE_WORKERS")
    milvus_uri: str = Field(None, validation_alias="ADRAG_MILVUS_URI", validate_default=True)
    milvus_token: str = Field("", repr=False, validation_alias="ADRAG_MILVUS_TOKEN")
    keep_old_collections: bool = Field(False, validation_alias="ADRAG_KEEP_OLD_COLLECTIONS")
    sensor_interval: int = Field(15, gt=0, validation_alias="ADRAG_SENSOR_INTERVAL")
    # An upload whose mtime is this old (and whose size is not 0) is taken as finished in the
    # tick that first sees it; a younger one waits one more tick. 0 suits object stores, where
    # an object appears only once its upload completed.
    settle_seconds: float = Field(2.0, ge=0, validation_alias="ADRAG_SETTLE_SECONDS")
    # The full audit (every vector, every id of the index): nightly, not on every upload.
    audit_cron: str = Field("30 3 * * *", validation_alias="ADRAG_AUDIT_CRON")
    # retrieval_eval after uploads: at most once per tick of this schedule, once the index
    # changed (a model switch or a first index evaluates at once). It loads the model: not
    # worth paying on every single upload.
    eval_cron: str = Field("0 * * * *", validation_alias="ADRAG_EVAL_CRON")
    # Vectors of an older decode/model code version re-embedded per run, so an upgrade
    # re-embeds the library in bounded runs beside the uploads instead of one long one.
    reembed_batch: int = Field(500, gt=0, validation_alias="ADRAG_REEMBED_BATCH")
    # Big backfills on Ray (README): "" embeds in-process; "local" starts a Ray cluster for the
    # run; "auto", "HOST:PORT" or "ray://HOST:PORT" joins one, as Ray's own ray.init(address=).
    ray_address: str = Field("", validation_alias="ADRAG_RAY_ADDRESS")
    ray_actors: int = Field(2, gt=0, le=1024, validation_alias="ADRAG_RAY_ACTORS")
    # Fewer photos to embed than this stay in-process: an upload is not worth a cluster.
    ray_min_images: int = Field(1000, ge=0, validation_alias="ADRAG_RAY_MIN_IMAGES")
    # A change set whose ingest failed is asked again after this many seconds, doubling
    # with each failed attempt up to ADRAG_RETRY_MAX_SECONDS.
    retry_base_seconds: float = Field(30.0, ge=0, validation_alias="ADRAG_RETRY_BASE_SECONDS")
    retry_max_seconds: float = Field(1800.0, ge=0, validation_alias="ADRAG_RETRY_MAX_SECONDS")
    # Text in photos: OCR of each rendition (photo_text), its words searchable beside the
    # labels. About 0.3 s a photo on 2 cores; off skips it (existing rows stay searchable).
    ocr: bool = Field(True, validation_alias="ADRAG_OCR")
    search_mode: SearchMode = Field("hybrid", validation_alias="ADRAG_SEARCH_MODE")
    hybrid_ranker: Ranker = Field("weighted", validation_alias="ADRAG_HYBRID_RANKER")
    hybrid_weights: Weights = Field((0.5, 0.5), validation_alias="ADRAG_HYBRID_WEIGHTS")
    # Quality-gated rollout: a new encoder's collection goes live only when its hybrid P@3 is
    # at most this many percentage points below the live one's (unless overridden).
    eval_margin: float = Field(2.0, ge=0, le=100, validation_alias="ADRAG_EVAL_MARGIN")
    eval_override: bool = Field(False, validation_alias="ADRAG_EVAL_OVERRIDE")
    # Search by photo and diversity: two photos at or above this cosine are near duplicates
    # (the same shot re-exported). None: by encoder, see adrag_assets/index/diversity.py.
    near_duplicate_threshold: float | None = Field(
        None, gt=0, le=1, validation_alias="ADRAG_NEAR_DUPLICATE_THRESHOLD"
    )
    diversity: bool = Field(True, validation_alias="ADRAG_DIVERSITY")
    # A text search answers "no good match" (nothing) when neither the BM25 side nor the
    # dense score passes a floor; the dense floor is calibrated by retrieval_eval as the
    # cosine below which top-1 precision falls under this value (index/floor.py).
    relevance_floor: bool = Field(True, validation_alias="ADRAG_RELEVANCE_FLOOR")
    floor_precision: float = Field(0.5, gt=0, le=1, validation_alias="ADRAG_FLOOR_PRECISION")
    index_alias: str = INDEX_ALIAS
    dagster_home: Path = Field(None, validation_alias="DAGSTER_HOME", validate_default=True)
    # repr=False: the URL carries the database password.
    dagster_pg_url: str = Field("", repr=False, validation_alias="ADRAG_DAGSTER_PG_URL")
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    tracing: TracingSettings = Field(default_factory=dict, validate_default=True)
    app: AppSettings = Field(default_factory=AppSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)

    @property
    def raw_dir(self) -> Path:
        if not isinstance(self.volume, Path):
            raise ValueError(f"the volume {self.volume} is an object store, not a folder")
        return self.volume / "raw"

    @property
    def volume_uri(self) -> str:
        """The volume as :func:`adrag_assets.volume.open_volume` takes it: a folder or a URL."""
        return str(self.volume)

    @property
    def tables_uri(self) -> str:
        return str(self.tables_dir)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @field_validator("volume", "tables_dir", "dagster_home", mode="before")
    @classmethod
    def _path_under_home(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            default = {"volume": "volume", "tables_dir": "tables", "dagster_home": "dagster"}
            # Without a valid home its own error is reported; no second one for this field.
            return info.data["home"] / default[info.field_name] if "home" in info.data else Path()
        if "://" in str(value):
            if info.field_name == "dagster_home":
                raise ValueError("expected a local folder (Dagster keeps its instance on disk)")
            url = object_store_url(str(value))
            if info.field_name == "tables_dir" and url.startswith("az://"):
                # dagster-deltalake's AzureConfig needs the account name, which the URL lacks.
                raise ValueError("Delta tables take s3:// or gs://; az:// is for ADRAG_VOLUME")
            return url
        return Path(value).expanduser().resolve()

    @field_validator("audit_cron", "eval_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,\-]+", f) for f in fields):
            raise ValueError("expected a cron schedule of five fields, e.g. '30 3 * * *'")
        return " ".join(fields)

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, address: str) -> str:
        if address in ("", "local", "auto") or re.fullmatch(r"(ray://)?[\w.\-]+:\d+", address):
            return address
        raise ValueError("expected local, auto, HOST:PORT or ray://HOST:PORT")

    @field_validator("dagster_pg_url")
    @classmethod
    def _postgres_url(cls, url: str) -> str:
        # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3,
        # whose NOTIFY parameters Dagster's event log does not support: name the driver.
        if url and not url.startswith("postgresql+psycopg2://"):
            raise ValueError("expected postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE")
        return url

    @field_validator("milvus_uri", mode="before")
    @classmethod
    def _milvus_under_home(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return str(info.data.get("home", Path()) / "milvus" / "adrag.db")
        return value

    @field_validator("tracing", mode="before")
    @classmethod
    def _tracing_under_home(cls, value: Any, info: ValidationInfo) -> Any:
        given = {"tracking_uri", "ADRAG_MLFLOW_TRACKING_URI"}
        if isinstance(value, Mapping) and not given & value.keys():
            store = info.data.get("home", Path()) / "mlflow" / "mlflow.db"
            value = {**value, "tracking_uri": f"sqlite:///{store}"}
        return value


_SECTIONS: dict[str, type[_Section]] = {
    "generator": GeneratorSettings,
    "llm": LlmSettings,
    "tracing": TracingSettings,
    "app": AppSettings,
    "maintenance": MaintenanceSettings,
}


def _variables(model: type[_Section]) -> tuple[str, ...]:
    return tuple(
        f.validation_alias
        for f in model.model_fields.values()
        if isinstance(f.validation_alias, str)
    )


_MODELS: tuple[type[_Section], ...] = (Settings, *_SECTIONS.values())
# Every variable adrag reads, in the order of the fields.
VARIABLES: tuple[str, ...] = tuple(v for model in _MODELS for v in _variables(model))
# Whose values never appear in an error, a repr, a log or a trace. OPENAI_API_KEY is not
# adrag's, but an LLM endpoint's client in the same process may well be given it.
SECRET_VARS: tuple[str, ...] = (
    *(
        f.validation_alias
        for model in _MODELS
        for f in model.model_fields.values()
        if f.repr is False and isinstance(f.validation_alias, str)
    ),
    "OPENAI_API_KEY",
)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``env`` (default: the process environment); an empty value means
    the default. Raises :class:`SettingsError` naming every bad variable."""
    env = os.environ if env is None else env
    given = {name: str(env[name]).strip() for name in VARIABLES if name in env}
    given = {name: value for name, value in given.items() if value}

    def pick(model: type[_Section]) -> dict[str, str]:
        return {name: given[name] for name in _variables(model) if name in given}

    data: dict[str, Any] = pick(Settings)
    data.update({section: pick(model) for section, model in _SECTIONS.items()})
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise SettingsError(_problems(e, given)) from None


def _problems(error: ValidationError, given: Mapping[str, str]) -> list[str]:
    lines: dict[str, str] = {}
    for detail in error.errors():
        loc = detail["loc"]
        name = next((p for p in loc if p in VARIABLES), ".".join(map(str, loc)))
        if name in lines:  # one line per variable, its first problem
            continue
        shown = "" if name in SECRET_VARS or name not in given else f"={given[name]!r}"
        lines[name] = f"{name}{shown}: {_expected(detail)}"
    return list(lines.values())


def _expected(detail: ErrorDetails) -> str:
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "expected an integer"
    if kind in ("float_parsing", "float_type"):
        return "expected a number"
    if kind in ("bool_parsing", "bool_type"):
        return "expected on or off (1, true, yes or 0, false, no)"
    if kind == "literal_error":
        return f"expected {str(ctx.get('expected', '')).replace(chr(39), '')}"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected a number {words} {ctx[key]:g}"
    return detail["msg"].removeprefix("Value error, ")


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret variables (:data:`SECRET_VARS`) that are set, for redaction.

    Never raises, whatever else is misconfigured: redaction runs while errors are reported.
    """
    env = os.environ if env is None else env
    # Short values would redact innocent substrings; real tokens are long.
    return [v for name in SECRET_VARS if len(v := str(env.get(name) or "").strip()) >= 8]


def apply_secrets(
    secrets: Mapping[str, Any], env: MutableMapping[str, str] | None = None
) -> list[str]:
    """Copy adrag's variables from another source (Streamlit secrets) into ``env`` (default:
    the process environment), where :func:`load_settings` reads them. Variables already set
    win. Returns the names copied."""
    env = os.environ if env is None else env
    copied = []
    for name, value in secrets.items():
        if name in VARIABLES and name not in env and isinstance(value, str | int | float):
            env[name] = str(value)
            copied.append(name)
    return copied


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``overrides``: for the processes adrag starts."""
    return {**os.environ, **overrides}
