"""Models-from-code entry for MLflow: the CLIP encoder as a pyfunc model.

    mlflow.pyfunc.log_model(name="encoder", python_model="<this file>",
                            model_config={"encoder_spec": "random:adrag-tiny", "precision": "fp32"})

MLflow stores this file, not a pickled object, and runs it when the model loads; the encoder
is rebuilt from ``model_config`` (and, for a local checkpoint, the ``checkpoint`` artifact).
:mod:`adrag_assets.embeddings.mlflow_model` logs and registers it.

(No ``from __future__ import annotations`` here: MLflow reads ``predict``'s type hints.)
"""

import base64
import binascii
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from adrag_assets.embeddings.encoder import ClipEncoder, decode_for_model, load_encoder
from adrag_assets.embeddings.spec import EncoderSpec


class ClipEncoderModel(mlflow.pyfunc.PythonModel):
    """Rows with an ``image`` (base64 bytes) or a ``text``; returns one unit vector each."""

    encoder: ClipEncoder

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        spec = context.model_config["encoder_spec"]
        if "checkpoint" in context.artifacts:
            # The checkpoint travels with the model: use the copy in the model's artifacts.
            spec = f"{EncoderSpec.parse(spec).arch}:{context.artifacts['checkpoint']}"
        self.encoder = load_encoder(spec, context.model_config.get("precision", "fp32"))

    # A DataFrame hint: MLflow infers no schema from it (the explicit signature holds the
    # optional columns and the vector's dimension, which hints cannot express).
    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
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


mlflow.models.set_model(ClipEncoderModel())
