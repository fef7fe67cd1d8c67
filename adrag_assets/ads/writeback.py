"""Recording written creatives in Dagster: one runless materialization of ``ad_creatives``
each, and the evaluation of its placement-spec check.

A creative is ``ads/YYYY-MM-DD/<slug>-<set>/v<variant>-<placement>-r<version>.png`` with a
``.json`` sidecar beside it, written all or nothing (sidecars first) with
:meth:`Volume.write_all_or_nothing`; its materialization carries the same metadata and a
thumbnail, so lineage runs from the photo to the ad.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from adrag_assets.images.thumbnails import thumbnail_markdown
from adrag_assets.instance import ensure_dagster_home
from adrag_assets.redact import redact

THUMBNAIL_PX = 160
CREATIVES_KEY = "ad_creatives"
SPEC_CHECK = "meets_placement_spec"
_CREATIVE_KEYS = (
    "placement",
    "size",
    "headline",
    "primary_text",
    "cta",
    "segment",
    "description",
    "seed_image_id",
    "seed_path",
    "brand_path",
    "brand_kit_digest",
    "brand_kit_source",
    "generator",
    "model",
    "encoder_id",
    "set_id",
    "variant",
    "version",
    "parent",
    "user",
    "user_subject",
    "user_email",
    "created_at",
    "path",
    "sidecar",
)


def _report_creative_to(
    instance: dg.DagsterInstance, metadata: dict[str, Any], png: bytes, uri: str
) -> None:
    metadata = redact(metadata)
    meta: dict[str, Any] = {k: metadata[k] for k in _CREATIVE_KEYS if metadata.get(k) is not None}
    meta["contrast"] = dg.MetadataValue.json(metadata["contrast"])
    meta["text_boxes"] = dg.MetadataValue.json(metadata["text_boxes"])
    meta["safe_zone_ok"] = bool(metadata["safe_zone_ok"])
    meta["dagster/uri"] = uri
    meta["creative"] = dg.MetadataValue.md(
        thumbnail_markdown([(metadata["path"], png)], size=THUMBNAIL_PX)
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=CREATIVES_KEY,
            description=f"{metadata['placement']} creative v{metadata['version']} "
            f"of set {metadata['set_id']}",
            metadata=meta,
        )
    )
    problems = list(metadata.get("spec_problems") or [])
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(CREATIVES_KEY),
            check_name=SPEC_CHECK,
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(problems) or f"meets the {metadata['placement']} spec",
            metadata={"path": metadata["path"], "problems": dg.MetadataValue.json(problems)},
        )
    )


def report_creatives(
    dagster_home: Path,
    instance: dg.DagsterInstance | None,
    creatives: list[tuple[dict[str, Any], bytes, str]],
) -> None:
    """Report each (metadata, png, uri): a materialization of ``ad_creatives`` and the
    evaluation of its placement-spec check, to ``instance`` or the one at ``dagster_home``."""
    if instance is not None:
        for meta, png, uri in creatives:
            _report_creative_to(instance, meta, png, uri)
        return
    ensure_dagster_home(dagster_home)
    with dg.DagsterInstance.get() as own:
        for meta, png, uri in creatives:
            _report_creative_to(own, meta, png, uri)
