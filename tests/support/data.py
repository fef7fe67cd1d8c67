"""Where the test data lives: the real pet photos beside the repo, and the test encoder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PETS = REPO.parent / "shared" / "datasets" / "oxford-pets-sample"
# A small real open_clip architecture with fixed random weights: fast, offline, NOT semantic.
TEST_ENCODER = "random:adrag-tiny"


def pets_images() -> Path:
    images = PETS / "images"
    if not images.is_dir():
        raise RuntimeError(f"the pet photos are expected at {images} (shared/ beside the repo)")
    return images
