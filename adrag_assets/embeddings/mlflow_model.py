"""The encoder as an MLflow pyfunc model: base64 image or text in, unit vector out.

Registered in the local MLflow registry (the store of :mod:`adrag_assets.tracing`) under
``adrag-encoder``, one version per encoder id, tagged with that id. The model carries only the
encoder spec (and, for a local checkpoint, the file as an artifact), so loading a version
rebuilds exactly the encoder the pipeline uses; `embed_with_model` computes embeddings from it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from adrag_assets.embeddings.encoder import EncoderSpec
from adrag_assets.settings import Settings, load_settings

log = logging.getLogger(__name__)
MODEL_NAME = "adrag-encoder"
TAG_ENCODER_ID = "adrag.encoder_id"


def _python_model_class():
    import mlflow

    class ClipEncoderModel(mlflow.pyfunc.PythonModel):
        """Rows with an ``image`` (base64 bytes) or a ``text``; returns one unit vector each."""

        def load_context(self, context) -> None:
            from adrag_assets.embeddings.encoder import load_encoder

            spec = context.model_config["encoder_spec"]
            if "checkpoint" in context.artifacts:
                spec = f"{EncoderSpec.parse(spec).arch}:{context.artifacts['checkpoint']}"
            self.encoder = load_encoder(spec, context.model_config.get("precision", "fp32"))

        def predict(self, context, model_input, params=None) -> np.ndarray:
            from adrag_assets.embeddings.encoder import decode_for_model

            rows = model_input.to_dict("records")
            out = np.zeros((len(rows), self.encoder.dim), np.float32)
            images, texts = [], []
            for i, row in enumerate(rows):
                image, text = row.get("image"), row.get("text")
                if isinstance(image, str) and image:
                    try:
                        data = base64.b64decode(image, validate=True)
                        images.append((i, decode_for_model(data, self.encoder.image_size)))
                    except (binascii.Error, ValueError, OSError) as e:
                        raise ValueError(f"row {i}: 'image' is not a base64 image ({e})") from None
                elif isinstance(text, str) and text:
                    texts.append((i, text))
                else:
                    raise ValueError(f"row {i}: give an 'image' (base64) or a 'text'")
            if images:
                out[[i for i, _ in images]] = self.encoder.encode_images([im for _, im in images])
            if texts:
                out[[i for i, _ in texts]] = self.encoder.encode_texts([t for _, t in texts])
            return out

    return ClipEncoderModel


@dataclass(frozen=True)
class RegisteredEncoder:
    name: str
    version: str
    model_uri: str
    encoder_id: str
    random_weights: bool


def register_encoder(settings: Settings | None = None, name: str = MODEL_NAME) -> RegisteredEncoder:
    """Log the configured encoder as a pyfunc model and register it (once per encoder id)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from adrag_assets import tracing

    s = settings or load_settings()
    spec = EncoderSpec.parse(s.encoder)
    eid = spec.encoder_id
    uri = s.tracing.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=tracing._experiment_id(mlflow, uri, s.tracing.experiment))
    client = mlflow.MlflowClient()
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(TAG_ENCODER_ID) == eid:
            log.info("encoder %s is already version %s of %s", eid, mv.version, name)
            return RegisteredEncoder(
                name, str(mv.version), f"models:/{name}/{mv.version}", eid, spec.is_random
            )
    example = pd.DataFrame({"image": [None], "text": ["a beagle on a lawn"]})
    signature = infer_signature(
        pd.DataFrame({"image": ["<base64>"], "text": ["a beagle"]}),
        np.zeros((1, 2), np.float32),
    )
    artifacts = {"checkpoint": str(spec.checkpoint)} if spec.checkpoint else None
    tags = {
        TAG_ENCODER_ID: eid,
        "adrag.encoder_spec": s.encoder,
        "adrag.random_weights": str(spec.is_random).lower(),
    }
    with mlflow.start_run(run_name=f"register {eid}", tags=tags):
        info = mlflow.pyfunc.log_model(
            name="encoder",
            python_model=_python_model_class()(),
            artifacts=artifacts,
            model_config={"encoder_spec": s.encoder, "precision": "fp32"},
            signature=signature,
            input_example=example,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return RegisteredEncoder(name, version, f"models:/{name}/{version}", eid, spec.is_random)


def embed_with_model(model: Any, images: list[bytes] = (), texts: list[str] = ()) -> np.ndarray:
    """Vectors from a loaded pyfunc encoder: images first, then texts, in the given order."""
    import pandas as pd

    rows = [{"image": base64.b64encode(b).decode(), "text": None} for b in images]
    rows += [{"image": None, "text": t} for t in texts]
    return np.asarray(model.predict(pd.DataFrame(rows)), np.float32)
