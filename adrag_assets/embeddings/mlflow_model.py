"""The encoder as an MLflow pyfunc model: base64 image or text in, unit vector out.

Registered in the local MLflow registry (the store of :mod:`adrag_assets.tracing`) under
``adrag-encoder``, one version per encoder id, tagged with that id. The model is logged from
code (:mod:`adrag_assets.embeddings.encoder_model_code`, nothing pickled) and carries only the
encoder spec (and, for a local checkpoint, the file as an artifact), so loading a version
rebuilds exactly the encoder the pipeline uses; `embed_with_model` computes embeddings from it.

The alias ``live`` follows the Milvus alias: it names the version whose encoder built the
collection search answers from, so ``models:/adrag-encoder@live`` encodes queries the way the
live index expects. The index asset moves it (:func:`follow_live_encoder`), and
:func:`register_encoder` sets it when it registers the live encoder.
"""

from __future__ import annotations

import ast
import base64
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.settings import Settings, load_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

log = logging.getLogger(__name__)
MODEL_NAME = "adrag-encoder"
LIVE_ALIAS = "live"
TAG_ENCODER_ID = "adrag.encoder_id"
MODEL_CODE = Path(__file__).with_name("encoder_model_code.py")
# The served model encodes in fp32, the reference precision, whatever the pipeline runs in.
MODEL_PRECISION = "fp32"
# What the model's code and the adrag modules it carries import, pinned to this environment
# (torch and torchvision exactly: those builds are the ones on this machine's disk). Listing
# them spares MLflow's inference, which loads the model in a subprocess (about 10 s) and sees
# only top-level imports. adrag itself is not a requirement: no package index has it, so the
# model carries the few modules it needs (``code_paths``, see :func:`model_code_paths`).
REQUIREMENTS = (
    "mlflow",
    "torch",
    "torchvision",
    "open_clip_torch",
    "pillow",
    "numpy",
    "pandas",
    "pydantic",
)
PACKAGE = "adrag_assets"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Data files the carried modules read beside themselves (the project's open_clip configs).
MODEL_DATA = ("embeddings/model_configs",)


@dataclass(frozen=True)
class RegisteredEncoder:
    name: str
    version: str
    model_uri: str
    encoder_id: str
    random_weights: bool
    alias: str | None = None  # LIVE_ALIAS when this version's encoder built the live index


def signature(dim: int) -> ModelSignature:
    """Rows of an optional ``image`` (base64) and an optional ``text``; a float32 vector of
    ``dim`` per row."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(DataType.string, "image", required=False),
                ColSpec(DataType.string, "text", required=False),
            ]
        ),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim), "embedding")]),
    )


def register_encoder(settings: Settings | None = None, name: str = MODEL_NAME) -> RegisteredEncoder:
    """Log the configured encoder as a pyfunc model and register it (once per encoder id).

    When this encoder is the one behind the Milvus alias, the version also gets the alias
    ``live``. Reading Milvus or moving the alias may fail (a Milvus Lite file held by another
    process): the registration stands and a warning says the alias was not updated.
    """
    import mlflow

    from adrag_assets import tracing

    s = settings or load_settings()
    spec = EncoderSpec.parse(s.encoder)
    eid = spec.encoder_id
    uri = tracing.use_store()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = _version_for(client, name, eid)
    if version is not None:
        log.info("encoder %s is already version %s of %s", eid, version, name)
    else:
        version = _log_and_register(s.encoder, spec, name)
    alias = None
    try:
        live = _live_encoder_id(s)
        if _point_live(client, name, live) == version:
            alias = LIVE_ALIAS
    except Exception as e:
        log.warning(
            "registered %s version %s, but could not update its alias %r: %s",
            name,
            version,
            LIVE_ALIAS,
            tracing.redact(f"{type(e).__name__}: {e}"),
        )
    return RegisteredEncoder(name, version, f"models:/{name}/{version}", eid, spec.is_random, alias)


def _log_and_register(encoder_spec: str, spec: EncoderSpec, name: str) -> str:
    import mlflow
    import pandas as pd

    from adrag_assets.embeddings.encoder import load_encoder  # torch: only when registering

    eid = spec.encoder_id
    # The real dimension for the signature; the model's own load for the input example's
    # check reuses this process's cached encoder.
    dim = load_encoder(encoder_spec, MODEL_PRECISION).dim
    tags = {
        TAG_ENCODER_ID: eid,
        "adrag.encoder_spec": encoder_spec,
        "adrag.random_weights": str(spec.is_random).lower(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="adrag-model-code-") as staging,
        mlflow.start_run(run_name=f"register {eid}", tags=tags),
    ):
        info = mlflow.pyfunc.log_model(
            name="encoder",
            python_model=str(MODEL_CODE),
            artifacts={"checkpoint": str(spec.checkpoint)} if spec.checkpoint else None,
            model_config={"encoder_spec": encoder_spec, "precision": MODEL_PRECISION},
            code_paths=[str(model_code_paths(Path(staging)))],
            signature=signature(dim),
            input_example=pd.DataFrame({"image": [None], "text": ["a beagle on a lawn"]}),
            pip_requirements=requirements(),
        )
    # Registered with its tags in one call, so a concurrent registration never sees an
    # untagged version (and registers the same encoder twice).
    mv = mlflow.register_model(info.model_uri, name, tags=tags)
    return str(mv.version)


def requirements() -> list[str]:
    """The model's pip requirements: what it imports, at this environment's versions."""
    return [_pinned(d) for d in REQUIREMENTS]


def model_modules() -> list[Path]:
    """The adrag modules loading the model imports: those the model's code imports at module
    level, theirs in turn, and their packages' ``__init__.py``; paths under the package."""
    todo, seen = [MODEL_CODE], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _package_imports(path):
            todo += _module_files(name)
    # The model's code itself travels as the model (``python_model``), not as a module.
    return sorted(p.relative_to(PACKAGE_DIR) for p in seen - {MODEL_CODE})


def _package_imports(path: Path) -> list[str]:
    """Module names of the package imported at the top level of ``path`` (imports inside
    functions run only when called, and serving calls none of the package's heavy ones)."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == PACKAGE:
                names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    return names


def _module_files(name: str) -> list[Path]:
    """The file of module ``name`` (if it is one; ``from m import f`` names no module) and
    the ``__init__.py`` of each package above it."""
    parts = name.split(".")[1:]
    files = [PACKAGE_DIR / "__init__.py"]
    files += [PACKAGE_DIR.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
    files.append(PACKAGE_DIR.joinpath(*parts).with_suffix(".py"))
    return [f for f in files if f.is_file()]


def model_code_paths(staging: Path) -> Path:
    """A copy of the package reduced to :func:`model_modules` and :data:`MODEL_DATA`, made
    under ``staging``: the model's ``code_paths``, so it loads where adrag is not installed."""
    root = staging / PACKAGE
    for rel in model_modules():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_DIR / rel, root / rel)
    for rel in MODEL_DATA:
        shutil.copytree(PACKAGE_DIR / rel, root / rel, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _pinned(distribution: str) -> str:
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:  # e.g. adrag run from a source tree, not installed
        return distribution


def _version_for(client: MlflowClient, name: str, encoder_id: str) -> str | None:
    """The registered version of ``encoder_id`` (the oldest, if registered twice)."""
    found = [
        int(mv.version)
        for mv in client.search_model_versions(f"name = '{name}'")
        if mv.tags.get(TAG_ENCODER_ID) == encoder_id
    ]
    return str(min(found)) if found else None


def _point_live(client: MlflowClient, name: str, live_encoder_id: str | None) -> str | None:
    """Point ``live`` at the version of ``live_encoder_id``; return it (None: no such version).

    Without such a version the alias is removed rather than left behind: a stale ``live``
    would load an encoder whose vectors do not match the index.
    """
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_registered_model(name).aliases.get(LIVE_ALIAS)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None  # nothing registered yet
        raise
    version = _version_for(client, name, live_encoder_id) if live_encoder_id else None
    if version is None:
        if current is not None:
            client.delete_registered_model_alias(name, LIVE_ALIAS)
            log.info(
                "%s@%s removed: no version registered for the live encoder %s",
                name,
                LIVE_ALIAS,
                live_encoder_id or "(none)",
            )
        return None
    if str(current) != version:
        client.set_registered_model_alias(name, LIVE_ALIAS, version)
        log.info("%s@%s -> version %s (%s)", name, LIVE_ALIAS, version, live_encoder_id)
    return version


def follow_live_encoder(live_encoder_id: str, name: str = MODEL_NAME) -> str | None:
    """Point ``live`` at the registered version of the encoder now behind the Milvus alias.

    Returns that version, or None when the encoder is not registered (the alias is then
    removed; ``adrag register-encoder`` registers it and sets the alias). Registers nothing:
    logging a model costs seconds, and the index must stay fast. Cheap when no MLflow store
    exists yet (nothing to follow). Errors propagate; the caller decides how loud they are.
    """
    from adrag_assets import tracing

    uri = tracing.tracking_uri()
    if not tracing.store_exists(uri):
        return None
    import mlflow

    return _point_live(
        mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), name, live_encoder_id
    )


def _live_encoder_id(s: Settings) -> str | None:
    """The encoder id recorded by the collection behind the Milvus alias, if any."""
    # A lazy import: the index sits downstream of the encoder; only this lookup needs it.
    from adrag_assets.index.milvus import MilvusIndex, is_local_file_uri

    if is_local_file_uri(s.milvus_uri) and not Path(s.milvus_uri).exists():
        return None  # nothing indexed yet; opening Milvus Lite would create the file
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    try:
        return index.live_encoder_id()
    finally:
        index.close()


def embed_with_model(
    model: Any, images: Sequence[bytes] = (), texts: Sequence[str] = ()
) -> np.ndarray:
    """Vectors from a loaded pyfunc encoder: images first, then texts, in the given order."""
    import pandas as pd

    rows = [{"image": base64.b64encode(b).decode(), "text": None} for b in images]
    rows += [{"image": None, "text": t} for t in texts]
    return np.asarray(model.predict(pd.DataFrame(rows)), np.float32)


def log_version_metrics(
    encoder_id: str, metrics: dict[str, float], name: str = MODEL_NAME
) -> str | None:
    """Log ``metrics`` as metrics of the registered version of ``encoder_id``: a run named
    ``evaluate <id>`` whose metrics are linked to that version's logged model (MLflow 3
    shows them on the model version). Returns the version, or None when the encoder is not
    registered (nothing logged; ``adrag register-encoder`` registers it). Errors propagate.
    """
    from adrag_assets import tracing

    if not tracing.store_exists():
        return None
    import mlflow

    uri = tracing.use_store()  # mlflow.log_metrics below writes to the global store
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = _version_for(client, name, encoder_id)
    except mlflow.exceptions.MlflowException:
        return None
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    experiment = client.get_run(mv.run_id).info.experiment_id if mv.run_id else None
    run = client.create_run(
        experiment or "0",
        run_name=f"evaluate {encoder_id}",
        tags={TAG_ENCODER_ID: encoder_id, "adrag.model_version": version},
    )
    # Metric names: MLflow allows letters, digits, _ - . / and spaces.
    clean = {k.replace("@", "_at_"): float(v) for k, v in metrics.items()}
    mlflow.log_metrics(clean, run_id=run.info.run_id, model_id=mv.model_id)
    client.set_terminated(run.info.run_id)
    return version
