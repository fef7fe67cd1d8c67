"""Where the test data lives: the real pet photos beside the repo, and the test encoder."""

from __future__ import annotations

import shutil
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


# Five breeds, eight photos each: enough to search and break, quick to index.
FEW_BREEDS = ("beagle", "pug", "samoyed", "Bengal", "Persian")


def copy_few_pets(raw_dir: Path, breeds: tuple[str, ...] = FEW_BREEDS) -> int:
    """Copy the photos of ``breeds`` and labels.csv under ``raw_dir``; how many photos."""
    (raw_dir / "pets").mkdir(parents=True, exist_ok=True)
    photos = [p for b in breeds for p in sorted(pets_images().glob(f"{b}_*.jpg"))]
    for p in photos:
        shutil.copy(p, raw_dir / "pets" / p.name)
    shutil.copy(PETS / "labels.csv", raw_dir / "labels.csv")
    return len(photos)


def read_images(tables, columns: list[str], where: str | None = None):
    """``tables.read("images", columns, where)`` with ``labels`` from ``photo_labels`` (where
    labels live; images' own column is the old one, null in new rows)."""
    import pyarrow as pa

    from adrag_assets.tables import IMAGES

    picked = ", ".join("l.labels AS labels" if c == "labels" else f"i.{c} AS {c}" for c in columns)
    sql = f"SELECT {picked} FROM images i LEFT JOIN photo_labels l ON i.image_id = l.image_id" + (
        f" WHERE {where}" if where else ""
    )
    schema = pa.schema([IMAGES.field(c) for c in columns])
    if not tables.exists("images"):
        return schema.empty_table()
    tables.open("photo_labels")
    return tables.query("images", sql, also=["photo_labels"]).read_all().cast(schema)
