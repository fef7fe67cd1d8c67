"""The encoder as a registered MLflow pyfunc model gives the pipeline's vectors."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from adrag_assets.embeddings.encoder import ClipEncoder, EncoderSpec, decode_for_model
from adrag_assets.embeddings.mlflow_model import (
    MODEL_NAME,
    TAG_ENCODER_ID,
    embed_with_model,
    register_encoder,
)
from adrag_assets.settings import load_settings
from tests.support.data import TEST_ENCODER, pets_images


@pytest.fixture
def store(env, tmp_path, monkeypatch):
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def test_registered_encoder_matches_the_pipeline(store):
    reg = register_encoder(load_settings())
    assert (reg.name, reg.encoder_id, reg.random_weights) == (
        MODEL_NAME,
        "random:adrag-tiny@0",
        True,
    )
    assert register_encoder(load_settings()).version == reg.version  # once per encoder id
    mv = mlflow.MlflowClient().get_model_version(MODEL_NAME, reg.version)
    assert mv.tags[TAG_ENCODER_ID] == reg.encoder_id

    model = mlflow.pyfunc.load_model(reg.model_uri)
    photos = [p.read_bytes() for p in sorted(pets_images().glob("*.jpg"))[:3]]
    texts = ["a beagle on a lawn", "a cat"]
    got = embed_with_model(model, photos, texts)
    # A fresh encoder, not the process cache the pyfunc model may have used.
    enc = ClipEncoder(EncoderSpec.parse(TEST_ENCODER), "fp32")
    want = np.vstack(
        [
            enc.encode_images([decode_for_model(b, enc.image_size) for b in photos]),
            enc.encode_texts(texts),
        ]
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    import pandas as pd

    with pytest.raises(Exception, match="row 1"):
        model.predict(pd.DataFrame([{"image": None, "text": "ok"}, {"image": "%%%", "text": None}]))
