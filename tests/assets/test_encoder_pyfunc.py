"""The encoder as a registered MLflow pyfunc model: logged from code, the pipeline's vectors,
and the alias ``live`` that follows the Milvus alias."""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.index import image_index
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings.encoder import ClipEncoder, decode_for_model, load_encoder
from adrag_assets.embeddings.mlflow_model import (
    LIVE_ALIAS,
    MODEL_NAME,
    TAG_ENCODER_ID,
    embed_with_model,
    register_encoder,
)
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.index.milvus import collection_name
from adrag_assets.settings import Settings, load_settings
from tests.support.data import TEST_ENCODER, pets_images
from tests.support.helpers import adrag, index_for, run_pipeline, tables_for

LIVE_URI = f"models:/{MODEL_NAME}@{LIVE_ALIAS}"
# What MLflow says when a model is pickled (cloudpickle) or `predict` lacks type hints.
PICKLE_OR_HINTS = re.compile(r"pickl|type hint", re.IGNORECASE)


@pytest.fixture
def store(env, tmp_path, monkeypatch) -> Path:
    """A fresh MLflow store (not created until something is recorded); its database file."""
    db = tmp_path / "mlflow" / "mlflow.db"
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    before = mlflow.get_tracking_uri()
    yield db
    mlflow.set_tracking_uri(before)


@pytest.fixture
def few_pets(settings: Settings) -> Settings:
    """Eight pet photos in the volume: enough for a real index, quick to embed."""
    (settings.raw_dir / "pets").mkdir()
    for photo in sorted(pets_images().glob("*.jpg"))[:8]:
        shutil.copy(photo, settings.raw_dir / "pets" / photo.name)
    return settings


def test_registered_encoder_matches_the_pipeline(store):
    reg = register_encoder(load_settings())
    assert (reg.name, reg.encoder_id, reg.random_weights, reg.alias) == (
        MODEL_NAME,
        "random:adrag-tiny@0",
        True,
        None,  # nothing is indexed, so nothing is live
    )
    assert register_encoder(load_settings()).version == reg.version  # once per encoder id
    mv = mlflow.MlflowClient().get_model_version(MODEL_NAME, reg.version)
    assert mv.tags[TAG_ENCODER_ID] == reg.encoder_id

    # Logged from code: the module travels with the model, no pickled object does.
    files = {p.name for p in Path(mlflow.artifacts.download_artifacts(reg.model_uri)).iterdir()}
    assert "encoder_model_code.py" in files and not any(f.endswith(".pkl") for f in files)
    enc = ClipEncoder(EncoderSpec.parse(TEST_ENCODER), "fp32")  # fresh, not the process cache
    sig = mlflow.models.get_model_info(reg.model_uri).signature
    assert [(c.name, c.type.name, c.required) for c in sig.inputs.inputs] == [
        ("image", "string", False),
        ("text", "string", False),
    ]
    [out] = sig.outputs.inputs
    assert (out.type, out.shape) == (np.dtype(np.float32), (-1, enc.dim))

    model = mlflow.pyfunc.load_model(reg.model_uri)
    photos = [p.read_bytes() for p in sorted(pets_images().glob("*.jpg"))[:3]]
    texts = ["a beagle on a lawn", "a cat"]
    got = embed_with_model(model, photos, texts)
    want = np.vstack(
        [
            enc.encode_images([decode_for_model(b, enc.image_size) for b in photos]),
            enc.encode_texts(texts),
        ]
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    with pytest.raises(Exception, match="row 1"):
        model.predict(pd.DataFrame([{"image": None, "text": "ok"}, {"image": "%%%", "text": None}]))


@contextmanager
def mlflow_warnings() -> Iterator[list[str]]:
    """Every warning MLflow gives in the block: Python warnings and its loggers' warnings."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("mlflow")  # MLflow's loggers do not propagate to the root
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield seen
    finally:
        logger.removeHandler(handler)
        seen.extend(str(w.message) for w in caught)


def test_logging_the_encoder_warns_neither_about_pickling_nor_type_hints(store, tmp_path):
    # The check sees both warnings when they are due: an untyped model object, pickled.
    with mlflow_warnings() as seen:

        class Untyped(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        mlflow.pyfunc.save_model(tmp_path / "pickled", python_model=Untyped(), pip_requirements=[])
    assert any("pickl" in m.lower() for m in seen), seen
    assert any("type hint" in m.lower() for m in seen), seen

    with mlflow_warnings() as seen:
        reg = register_encoder(load_settings())
        mlflow.pyfunc.load_model(reg.model_uri)
    assert not [m for m in seen if PICKLE_OR_HINTS.search(m)]


def _live_version() -> str | None:
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, LIVE_ALIAS).version)
    except MlflowException:
        return None


def test_live_alias_follows_the_index(few_pets, env, store, instance, monkeypatch):
    # As users run it, in processes of their own (each holds the Milvus Lite file in turn).
    # Nothing registered: the index run leaves MLflow alone, without even creating a store.
    adrag("ingest", env=env)  # the store's URI is in os.environ
    assert not store.exists()

    # Registering the encoder behind the index gives it the alias.
    reg0 = json.loads(adrag("register-encoder", "--json", env=env).stdout)
    assert (reg0["encoder_id"], reg0["alias"]) == ("random:adrag-tiny@0", LIVE_ALIAS)
    assert set(reg0) == {"name", "version", "model_uri", "encoder_id", "random_weights", "alias"}

    mlflow.set_tracking_uri(f"sqlite:///{store}")
    model = mlflow.pyfunc.load_model(LIVE_URI)
    rows = tables_for(few_pets).read("image_embeddings", ["path", "embedding"]).to_pylist()
    photos = [(few_pets.volume / r["path"]).read_bytes() for r in rows]
    got = embed_with_model(model, photos, ["a beagle on a lawn"])
    assert got.shape == (len(rows) + 1, load_encoder(TEST_ENCODER, "fp32").dim)
    np.testing.assert_allclose(got[:-1], np.array([r["embedding"] for r in rows]), atol=1e-5)

    # Another encoder registered while the first is live: registered, not live.
    reg1 = register_encoder(few_pets.model_copy(update={"encoder": "random:adrag-tiny@1"}))
    assert reg1.alias is None and _live_version() == reg0["version"]

    # The index switches to that encoder: the alias follows it.
    monkeypatch.setenv("ADRAG_ENCODER", "random:adrag-tiny@1")
    meta = run_pipeline(load_settings(), instance)
    assert meta["image_index"]["encoder_model"] == f"models:/{MODEL_NAME}/{reg1.version}"
    assert _live_version() == reg1.version
    # A run that leaves the Milvus alias in place leaves MLflow alone.
    shutil.copy(sorted(pets_images().glob("*.jpg"))[8], few_pets.raw_dir / "pets" / "extra.jpg")
    meta = run_pipeline(load_settings(), instance)
    assert meta["image_index"]["upserted"] == 1 and "encoder_model" not in meta["image_index"]
    # `live` now encodes with the second encoder.
    np.testing.assert_allclose(
        embed_with_model(mlflow.pyfunc.load_model(LIVE_URI), texts=["a cat"]),
        load_encoder("random:adrag-tiny@1", "fp32").encode_texts(["a cat"]),
        atol=1e-5,
    )

    # An encoder nobody registered goes live: no version is left pretending to be live.
    monkeypatch.setenv("ADRAG_ENCODER", "random:adrag-tiny@2")
    meta = run_pipeline(load_settings(), instance)
    assert meta["image_index"]["encoder_model"] == ""
    assert _live_version() is None


def test_an_mlflow_failure_never_fails_the_index(few_pets, tmp_path, monkeypatch, instance):
    broken = tmp_path / "broken" / "mlflow.db"
    broken.parent.mkdir()
    broken.write_bytes(b"this is not a database")
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", f"sqlite:///{broken}")

    result = dg.materialize(
        [images, image_embeddings, image_index],
        resources=resources_from_settings(few_pets),
        instance=instance,
    )
    assert result.success
    index = index_for(few_pets)
    try:
        assert index.live_collection() == collection_name("random:adrag-tiny@0")
    finally:
        index.close()
    warned = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.level == logging.WARNING and "MLflow: could not point" in e.user_message
    ]
    assert len(warned) == 1, warned
