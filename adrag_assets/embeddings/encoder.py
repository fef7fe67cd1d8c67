"""The CLIP encoder: an open_clip model loaded for a spec, encoding images and texts in
batches. What a spec names and its id are in :mod:`adrag_assets.embeddings.spec` (no torch).
"""

from __future__ import annotations

import functools
import io
import logging
import socket
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from adrag_assets.embeddings.spec import (
    PROJECT_MODEL_CONFIGS,
    RANDOM_WARNING,
    EncoderError,
    EncoderSpec,
    file_digest,
)
from adrag_assets.images.decode import upright_rgb

log = logging.getLogger(__name__)

# Small architectures the project registers with open_clip, for fast offline tests.
open_clip.add_model_config(PROJECT_MODEL_CONFIGS)


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere it is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 on a CPU that computes it natively, else fp32; on a GPU bf16 where it
    has it, else fp16 (half the memory traffic of fp32, vectors within cosine 0.999)."""
    if precision == "auto":
        if device == "cpu":
            return "bf16" if cpu_has_bf16() else "fp32"
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision not in DTYPES:
        raise EncoderError(f"precision {precision!r} must be 'fp32', 'bf16', 'fp16' or 'auto'")
    return precision


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class ClipEncoder:
    """A loaded open_clip model with its preprocessing, encoding unit vectors in batches."""

    def __init__(
        self,
        spec: EncoderSpec,
        precision: str = "auto",
        device: str = "cpu",
        decode_on_device: bool | None = None,
    ):
        self.spec = spec
        self.encoder_id = spec.encoder_id
        self.device = device
        self.precision = resolve_precision(precision, device)
        # JPEG renditions decoded and resized by torchvision on the model's device (nvjpeg on
        # a GPU) rather than by Pillow: by default on a GPU only (see embeddings/pipeline.py).
        self.decode_on_device = device != "cpu" if decode_on_device is None else decode_on_device
        self.model, self.preprocess = self._load()
        self.model.eval()
        self.dtype = DTYPES[self.precision]
        if self.dtype != torch.float32:
            self.model.to(self.dtype)
        self.tokenizer = open_clip.get_tokenizer(spec.arch)
        self.image_size = int(self.model.visual.image_size[0])
        steps = self.preprocess.transforms
        norm = next(t for t in steps if hasattr(t, "mean"))
        self.mean, self.std = tuple(norm.mean), tuple(norm.std)
        # The device path (embeddings/pipeline.py) repeats open_clip's usual eval transform:
        # Pillow-like steps, then to a 0..1 tensor and normalise; other preprocessing keeps
        # Pillow's path.
        tail = [type(t).__name__ for t in steps[-2:]]
        self._splits = tail in (["MaybeToTensor", "Normalize"], ["ToTensor", "Normalize"])
        # The tensor path repeats open_clip's usual eval transform (shortest side, centre
        # crop); a model preprocessed otherwise keeps Pillow's.
        size = getattr(steps[0], "size", None)
        if isinstance(size, list | tuple) and len(size) == 1:
            size = size[0]
        self.decode_on_device &= (
            self._splits and type(steps[0]).__name__ == "Resize" and isinstance(size, int)
        )
        with torch.inference_mode():
            self.dim = int(self.encode_texts(["probe"]).shape[1])

    @property
    def is_random(self) -> bool:
        return self.spec.is_random

    @property
    def label(self) -> str:
        """The id as shown to people: random weights always carry the warning."""
        return f"{self.encoder_id} ({RANDOM_WARNING})" if self.is_random else self.encoder_id

    def _load(self):
        spec = self.spec
        if spec.is_random:
            # Fixed random weights: the same seed gives the same model on every machine.
            torch.manual_seed(spec.seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.arch, pretrained=None, device=self.device
            )
            return model, preprocess
        if spec.checkpoint is not None:
            file_digest(spec.checkpoint)  # clear error when the file is missing
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.arch, pretrained=str(spec.checkpoint), device=self.device
                )
            except Exception as e:
                raise EncoderError(
                    f"cannot load checkpoint {spec.checkpoint} into {spec.arch}: {e}"
                ) from e
            return model, preprocess
        if spec.pretrained not in open_clip.list_pretrained_tags_by_model(spec.arch):
            raise EncoderError(
                f"{spec.arch} has no pretrained tag {spec.pretrained!r}; known: "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(spec.arch)) or 'none'}"
            )
        import huggingface_hub.constants as hub_constants

        online = _hub_reachable()
        saved = hub_constants.HF_HUB_OFFLINE
        # Unreachable hub: look in the local cache only, instead of retrying for a minute.
        hub_constants.HF_HUB_OFFLINE = saved or not online
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.arch, pretrained=spec.pretrained, device=self.device
            )
        except Exception as e:
            raise EncoderError(
                f"cannot load pretrained weights {spec.arch}:{spec.pretrained} "
                f"({'download failed' if online else 'no network and not in the local cache'}). "
                f"Download them where there is network (they are cached under "
                f"~/.cache/huggingface), point ADRAG_ENCODER at a local checkpoint "
                f"('{spec.arch}:/path/to/weights'), or run offline with "
                f"ADRAG_ENCODER=random:{spec.arch} (random weights, not semantic). Cause: {e}"
            ) from e
        finally:
            hub_constants.HF_HUB_OFFLINE = saved
        return model, preprocess

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one decoded image into the model's input tensor (CHW, float32)."""
        return self.preprocess(image)

    def normalise(self, pictures: torch.Tensor) -> torch.Tensor:
        """8-bit pictures (NCHW, already resized and cropped) as model input on the model's
        device: scaled to 0..1 and normalised (the preprocess's last two steps)."""
        batch = pictures.to(self.device)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (batch.float().div_(255) - mean).div_(std)

    @torch.inference_mode()
    def encode_pixels(self, batch: torch.Tensor) -> np.ndarray:
        """Encode a preprocessed batch (NCHW) into unit vectors, float32 (N, dim)."""
        feats = self.model.encode_image(batch.to(self.device, self.dtype))
        return _unit(feats)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        return _unit(self.model.encode_text(tokens))

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.encode_pixels(torch.stack([self.pixels(im) for im in images]))


def _unit(feats: torch.Tensor) -> np.ndarray:
    feats = feats.float()
    feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return feats.cpu().numpy().astype(np.float32)


def decode_for_model(data: bytes, size: int) -> Image.Image:
    """Decode image bytes as the upright RGB picture people see (EXIF orientation, 16-bit
    and transparency handled: :func:`upright_rgb`), letting JPEG decode at reduced scale
    when it is much larger.

    ``draft`` keeps both sides >= ``size``, so the model sees the same crop it would after a
    full decode, for a fraction of the work on large photos.
    """
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (size, size))
    return upright_rgb(image)


def load_encoder(spec: str, precision: str = "auto", device: str = "cpu") -> ClipEncoder:
    """Load (once per process) the encoder for a spec string."""
    return _cached_encoder(spec, precision, device)


@functools.lru_cache(maxsize=4)
def _cached_encoder(spec: str, precision: str, device: str) -> ClipEncoder:
    return ClipEncoder(EncoderSpec.parse(spec), precision=precision, device=device)
