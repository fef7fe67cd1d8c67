"""Recording a written ad in Dagster: one runless materialization of ``generated_ads``.

An ad is ``ads/YYYY-MM-DD/<slug>-<id>.png`` with a ``.json`` sidecar beside it, written all or
nothing (sidecar first) with :meth:`Volume.write_all_or_nothing`; its materialization carries
the same metadata and a thumbnail, so lineage runs from the photo to the ad.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from adrag_assets.images.thumbnails import thumbnail_markdown
from adrag_assets.instance import ensure_dagster_home
from adrag_assets.redact import redact

ASSET_KEY = "generated_ads"
THUMBNAIL_PX = 160


def _report_to(
    instance: dg.DagsterInstance, metadata: dict[str, Any], png: bytes, ad_uri: str
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
    meta["dagster/uri"] = ad_uri
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
    ad_uri: str,
) -> None:
    """Report the ad to ``instance``, or to the instance at ``dagster_home``."""
    if instance is not None:
        _report_to(instance, metadata, png, ad_uri)
        return
    ensure_dagster_home(dagster_home)
    with dg.DagsterInstance.get() as own:
        _report_to(own, metadata, png, ad_uri)
