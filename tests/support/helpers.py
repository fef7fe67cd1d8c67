"""Running the asset graph in tests, and reading back what it recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from PIL import Image, ImageDraw

from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.index import image_index
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import Settings
from adrag_assets.tables import Tables

ADRAG = str(Path(sys.executable).parent / "adrag")


def adrag(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """The `adrag` CLI as a user runs it, with this process's environment plus ``env``."""
    return subprocess.run(
        [ADRAG, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=check,
    )


def run_pipeline(settings: Settings, instance: dg.DagsterInstance) -> dict[str, dict]:
    """Materialize the graph once; return {asset: metadata values} and assert checks pass."""
    result = dg.materialize(
        [images, image_embeddings, image_index],
        resources=resources_from_settings(settings),
        instance=instance,
    )
    assert result.success
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(checks) == 5  # files, current vectors, vectors, index, quality gate
    failed = [(c.check_name, c.metadata) for c in checks if not c.passed]
    assert not failed, failed
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def index_for(settings: Settings) -> MilvusIndex:
    return MilvusIndex(settings.milvus_uri, settings.milvus_token, settings.index_alias)


def tables_for(settings: Settings) -> Tables:
    return Tables(settings.tables_dir)


def draw_brand(path: Path, color: tuple[int, int, int], fmt: str) -> None:
    """A stand-in product shot: a coloured bottle on a transparent (or white) background."""
    mode = "RGBA" if fmt == "PNG" else "RGB"
    image = Image.new(mode, (240, 360), (0, 0, 0, 0) if mode == "RGBA" else (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((50, 60, 190, 340), radius=24, fill=color)
    draw.rectangle((95, 20, 145, 60), fill=color)
    draw.text((90, 190), "ADRAG", fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
