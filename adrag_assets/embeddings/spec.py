"""Which CLIP model an ``ADRAG_ENCODER`` spec names, and its id, without loading torch.

An encoder spec is one string:

* ``ViT-B-32:laion2b_s34b_b79k`` -- an open_clip architecture and a pretrained tag;
* ``ViT-B-32:/models/clip.safetensors`` -- an architecture and a local checkpoint file;
* ``random:ViT-B-32`` or ``random:adrag-tiny@7`` -- the architecture with fixed random
  weights from a seed (default 0). It runs offline and is a *real* model, but its vectors
  carry no meaning; :attr:`EncoderSpec.is_random` and the id itself say so everywhere.

The encoder id (recorded with every embedding, and naming the Milvus collection) changes
whenever the vectors would: another model, tag, checkpoint content or seed.

Commands that only name the encoder (``adrag status``) use this module; importing
open_clip costs seconds of torch import, so the known architectures are read from the
model-config files open_clip reads, not from open_clip itself.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from adrag_assets.settings import OFFLINE_ENCODER

# Small architectures the project registers with open_clip, for fast offline tests.
PROJECT_MODEL_CONFIGS = Path(__file__).parent / "model_configs"
# Bump when preprocessing or normalisation changes what vectors a given model produces.
# 2: EXIF orientation, 16-bit scaling and transparency on white (upright_rgb).
ENCODER_CODE_VERSION = "2"
RANDOM_PREFIX = "random:"
RANDOM_WARNING = "random weights: offline test encoder, results are NOT semantic"


class EncoderError(RuntimeError):
    """The encoder spec is wrong or its weights cannot be loaded."""


@dataclass(frozen=True)
class EncoderSpec:
    arch: str
    pretrained: str | None = None  # a pretrained tag, or None
    checkpoint: Path | None = None
    seed: int | None = None  # set only for random weights

    @property
    def is_random(self) -> bool:
        return self.seed is not None

    @classmethod
    def parse(cls, spec: str) -> EncoderSpec:
        spec = spec.strip()
        if spec.startswith(RANDOM_PREFIX):
            arch, _, seed = spec[len(RANDOM_PREFIX) :].partition("@")
            try:
                return cls(arch=_known_arch(arch, spec), seed=int(seed or 0))
            except ValueError as e:
                raise EncoderError(f"encoder {spec!r}: seed after '@' must be an integer") from e
        arch, sep, rest = spec.partition(":")
        if not sep or not rest:
            raise EncoderError(
                f"encoder {spec!r} is not 'ARCH:PRETRAINED_TAG', 'ARCH:/path/to/checkpoint' "
                f"or 'random:ARCH[@SEED]' (e.g. {OFFLINE_ENCODER!r})"
            )
        arch = _known_arch(arch, spec)
        if "/" in rest or rest.endswith((".pt", ".pth", ".bin", ".safetensors")):
            return cls(arch=arch, checkpoint=Path(rest).expanduser())
        return cls(arch=arch, pretrained=rest)

    @property
    def encoder_id(self) -> str:
        if self.is_random:
            return f"{RANDOM_PREFIX}{self.arch}@{self.seed}"
        if self.checkpoint is not None:
            return f"{self.arch}:file-{file_digest(self.checkpoint)[:16]}"
        return f"{self.arch}:{self.pretrained}"


@functools.cache
def known_architectures() -> frozenset[str]:
    """What ``open_clip.list_models()`` lists once the project's configs are added: every
    model-config JSON in open_clip's package and in ``model_configs/`` with the keys
    open_clip requires (its ``_rescan_model_configs`` rule)."""
    folders = [PROJECT_MODEL_CONFIGS]
    found = importlib.util.find_spec("open_clip")
    if found is not None and found.submodule_search_locations:
        folders += [Path(p) / "model_configs" for p in found.submodule_search_locations]
    names = set()
    for folder in folders:
        for path in folder.glob("*.json"):
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # open_clip would fail on it too; the arch is then unknown
            if isinstance(config, dict) and all(
                key in config for key in ("embed_dim", "vision_cfg", "text_cfg")
            ):
                names.add(path.stem)
    return frozenset(names)


def _known_arch(arch: str, spec: str) -> str:
    if arch not in known_architectures():
        raise EncoderError(
            f"encoder {spec!r}: unknown open_clip architecture {arch!r} "
            f"(see open_clip.list_models(); 'adrag-tiny' is the project's small test model)"
        )
    return arch


@functools.cache
def file_digest(path: Path) -> str:
    """sha256 of a checkpoint file (EncoderError when it is not a file)."""
    if not path.is_file():
        raise EncoderError(f"encoder checkpoint {path} does not exist or is not a file")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
