"""Writing an ad back to the volume and recording it in Dagster.

An ad is ``ads/<YYYY-MM-DD>/<slug>-<id>.png`` with a ``.json`` sidecar beside it, written all or
nothing (sidecar first), and one runless materialization of the ``generated_ads`` asset with
the same metadata and a thumbnail, so lineage runs from the photo to the ad.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from adrag_assets.images.thumbnails import thumbnail_markdown
from adrag_assets.instance import ensure_dagster_home
from adrag_assets.redact import redact

ASSET_KEY = "generated_ads"
THUMBNAIL_PX = 160


def write_all_or_nothing(files: list[tuple[Path, bytes]]) -> None:
    """Write each (target, bytes), in order, atomically, and all or none of them.

    Each file is written to a hidden temp file in its target's folder, synced, then renamed
    over the target (``os.replace`` is atomic within a filesystem). If anything fails, every
    temp file, every already renamed target and every folder created here is removed.
    """
    created: list[Path] = []
    temps: list[Path] = []
    done: list[Path] = []
    try:
        for target, _ in files:
            for parent in reversed([target.parent, *target.parent.parents]):
                if not parent.exists():
                    parent.mkdir()
                    created.append(parent)
        for target, data in files:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps.append(Path(tmp))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for (target, _), tmp in zip(files, temps, strict=True):
            os.replace(tmp, target)
            done.append(target)
    except BaseException:
        for path in [*temps, *done]:
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            # Not empty: someone else wrote there meanwhile, not ours to remove.
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def remove_files(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)
    for folder in {p.parent for p in paths}:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: the day's other ads stay


def _report_to(
    instance: dg.DagsterInstance, metadata: dict[str, Any], png: bytes, ad_file: Path
) -> None:
    keys = (
        "segment",
        "description",
        "headline",
        "prompt",
        "seed_image_id",
        "seed_path",
        "brand_path",
        "generator",
        "model",
        "encoder_id",
        "user",
        "created_at",
        "path",
        "sidecar",
    )
    # Redacted here too: this is what lands in the Dagster event log, whoever the caller is.
    metadata = redact(metadata)
    meta: dict[str, Any] = {k: metadata[k] for k in keys}
    meta["seed_score"] = metadata["seed_score"]
    meta["duration_s"] = metadata["duration_s"]
    if metadata.get("provider_id"):
        meta["provider_id"] = metadata["provider_id"]
    meta["dagster/uri"] = str(ad_file)
    meta["ad"] = dg.MetadataValue.md(
        thumbnail_markdown([(metadata["path"], png)], size=THUMBNAIL_PX)
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=ASSET_KEY,
            partition=None,
            description=f"Ad for {metadata['segment'] or metadata['description']!r}",
            metadata=meta,
        )
    )


def report_ad(
    dagster_home: Path,
    instance: dg.DagsterInstance | None,
    metadata: dict[str, Any],
    png: bytes,
    ad_file: Path,
) -> None:
    if instance is not None:
        _report_to(instance, metadata, png, ad_file)
        return
    ensure_dagster_home(dagster_home)
    with dg.DagsterInstance.get() as own:
        _report_to(own, metadata, png, ad_file)
