"""Ads out: brand images (a source), ``ad_creatives`` (each creative reported by the service
that writes it, not made by a run) and ``campaign_ads``, one creative set per audience segment.

This module is part of the composition root: it may import the app (the planner and the
image-gen service) because Dagster runs them here.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

from pathlib import Path

import dagster as dg

from adrag_assets.defs.resources import MilvusResource, VolumeResource
from adrag_assets.redact import redact, redact_text
from adrag_assets.settings import load_settings
from adrag_assets.volume import SEGMENTS_FILE, Volume

GROUP = "ads"

brand_images = dg.AssetSpec(
    "brand_images",
    group_name=GROUP,
    description="Brand product images under brand/ in the storage volume (PNG, JPEG, WebP; "
    "any depth). The image-gen service composes them into ads; by default it uses the first "
    "one by name. Not materialized by Dagster: people upload them.",
    kinds={"files"},
)

ad_creatives = dg.AssetSpec(
    "ad_creatives",
    deps=["image_index", brand_images],
    group_name=GROUP,
    description="Campaign creatives: one brief -> variants x placements (Meta feed 4:5 and "
    "1:1, Stories/Reels 9:16, Google Display 1.91:1 and square), each a PNG and a JSON "
    "sidecar under ads/<date>/<set>/ in the volume. Every creative (and every edited version) "
    "is one materialization, reported by the service as it is written (not a run), with its "
    "placement, size, texts, contrast per text block, safe-zone result, source photo, brand "
    "kit digest and generator; its placement-spec check is reported beside it.",
    kinds={"files"},
)


@dg.asset_check(
    asset=ad_creatives.key,
    name="meets_placement_spec",
    description="The latest creative, read back from the volume: pixels of its placement, "
    "text and logo inside the safe zone, each text block's contrast at least 4.5:1, text "
    "within the placement's limits, the product covering at most 10 % of the subject.",
)
def creative_meets_placement_spec(
    context: dg.AssetCheckExecutionContext, volume: VolumeResource
) -> dg.AssetCheckResult:
    import io
    import json

    from PIL import Image

    from adrag_app.creative.placements import load_placements
    from adrag_app.creative.spec import spec_problems

    event = context.instance.get_latest_materialization_event(dg.AssetKey("ad_creatives"))
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=True, description="no creative yet")
    path = event.asset_materialization.metadata["path"].value
    store = volume.get()
    sidecar = str(path).removesuffix(".png") + ".json"
    try:
        meta = json.loads(store.read_bytes(sidecar))
        with Image.open(io.BytesIO(store.read_bytes(str(path)))) as image:
            image.load()
            placements = load_placements(store)
            placement = placements.get(meta.get("placement", ""))
            problems = (
                spec_problems(meta, image, placement)
                if placement
                else [f"unknown placement {meta.get('placement')!r}"]
            )
    except (FileNotFoundError, ValueError, OSError) as e:
        problems = [f"cannot read the creative or its sidecar: {e}"]
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or "meets its placement's spec",
        metadata={"path": str(path), "problems": dg.MetadataValue.json(problems)},
    )


segments = dg.DynamicPartitionsDefinition(name="campaign_segments")


def read_segments(volume: Volume) -> list[str]:
    """The segments listed in the volume's segments file, in order, without duplicates."""
    try:
        text = volume.read_bytes(SEGMENTS_FILE).decode("utf-8")
    except FileNotFoundError:
        return []
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    # Partition keys cannot hold some characters; segments are short phrases anyway. A key is
    # stored and shown by Dagster as it is: a token pasted into the file must not become one.
    return list(dict.fromkeys(redact_text(" ".join(line.split()))[:100] for line in lines if line))


def campaign_segments(volume: Volume, root: str) -> list[str]:
    """The segments of campaign_ads: those of the segments file, or when it lists none,
    the planner's catalog (the volume's segments.yaml or the packaged one).

    Never none: Dagster shows a partitioned asset with no partitions as materialized (0 of 0
    missing), so a fresh home would show campaign_ads green before any ad exists.
    """
    listed = read_segments(volume)
    if listed:
        return listed
    from adrag_app.planner.segments import SegmentsFileError, default_catalog, load_catalog

    try:
        catalog = load_catalog(root)
    except SegmentsFileError:  # the chat app reports a broken catalog; partitions go on
        catalog = default_catalog()
    return [redact_text(" ".join(seg.name.split()))[:100] for seg in catalog.segments]


# What a campaign's set shares, shown on its materialization (each creative has its own).
_SET_KEYS = (
    "set_id",
    "headline",
    "primary_text",
    "cta",
    "seed_path",
    "seed_image_id",
    "brand_path",
    "generator",
    "model",
    "encoder_id",
    "contact_sheet",
)


@dg.asset(
    partitions_def=segments,
    deps=["image_index", brand_images],
    group_name=GROUP,
    kinds={"files"},
    description="One creative set per audience segment listed in campaigns/segments.txt (or, "
    "while it lists none, the planner's segments): the planner proposes a pet description, "
    "the service retrieves the best photo and makes the set in every placement (copy written "
    "for the segment, never quoting it, and a contact sheet). Each creative is also an "
    "ad_creatives materialization.",
)
def campaign_ads(
    context: dg.AssetExecutionContext, volume: VolumeResource, milvus: MilvusResource
) -> dg.MaterializeResult:
    from adrag_app.planner.planner import make_planner
    from adrag_app.service.creatives import make_creatives

    segment = context.partition_key
    settings = load_settings().model_copy(update={"volume": Path(volume.root)})
    proposal = make_planner(settings.llm).propose(segment)
    if proposal.note:
        context.log.warning(redact_text(proposal.note))
    context.log.info(redact_text(f"{segment} -> {proposal.description} ({proposal.reason})"))
    made = make_creatives(
        proposal.description,
        "all",
        1,
        segment=segment,
        filters=proposal.filters,
        user="campaign_ads",
        settings=settings,
        instance=context.instance,
        index=milvus.get(),
    )
    first = made[0].metadata
    meta = redact(
        {
            **{k: first[k] for k in _SET_KEYS if first.get(k) is not None},
            "segment": segment,
            "description": proposal.description,
            "reason": proposal.reason,
            "planner": proposal.source,
            "ad_path": made[0].path,
        }
    )
    meta["filters"] = dg.MetadataValue.json(redact(dict(proposal.filters or {})))
    meta["creatives"] = dg.MetadataValue.json([c.path for c in made])
    return dg.MaterializeResult(metadata=meta)


@dg.sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=f"Keeps campaign_ads' partitions equal to {SEGMENTS_FILE} in the volume "
    "(the planner's catalog of segments while that file lists none).",
)
def campaign_segments_sensor(context: dg.SensorEvaluationContext, volume: VolumeResource):
    wanted = campaign_segments(volume.get(), volume.root)
    have = set(context.instance.get_dynamic_partitions(segments.name))
    added = [s for s in wanted if s not in have]
    removed = sorted(have - set(wanted))
    if not added and not removed:
        return dg.SkipReason(f"{len(wanted)} segment(s), no change in {SEGMENTS_FILE}")
    requests = []
    if added:
        requests.append(segments.build_add_request(added))
    if removed:
        requests.append(segments.build_delete_request(removed))
    context.log.info("segments: %d added, %d removed", len(added), len(removed))
    return dg.SensorResult(dynamic_partitions_requests=requests)


campaign_job = dg.define_asset_job(
    "campaign_job",
    selection=[campaign_ads],
    partitions_def=segments,
    description="Make the creative set of one audience segment (a partition of campaign_ads).",
)
