"""CLIP vectors: the open_clip encoder, the `image_embeddings` sync, the encoder in MLflow."""
