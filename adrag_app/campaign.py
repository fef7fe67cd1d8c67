"""Campaigns in batch: one ad per audience segment, as a partitioned Dagster asset.

The segments are listed in ``campaigns/segments.txt`` in the volume (one per line, ``#``
for comments). A sensor keeps the dynamic partitions of ``campaign_ads`` equal to that list;
the data team then fills the campaign from the UI (materialize the missing partitions, or a
backfill) or from a schedule. Each partition asks the planner for a pet description, runs the
image-gen service on photo #0 of its top-3, and records the ad; the service also reports it
as a materialization of ``generated_ads``, like any ad.
"""

import dataclasses
from pathlib import Path

import dagster as dg

from adrag_app.ad_assets import GROUP, brand_images
from adrag_assets.resources import MilvusResource, VolumeResource
from adrag_assets.settings import load_settings

SEGMENTS_FILE = "campaigns/segments.txt"
segments = dg.DynamicPartitionsDefinition(name="campaign_segments")


def read_segments(volume: Path) -> list[str]:
    """The segments listed in the volume's segments file, in order, without duplicates."""
    path = volume / SEGMENTS_FILE
    if not path.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text("utf-8").splitlines())
    # Partition keys cannot hold some characters; segments are short phrases anyway.
    return list(dict.fromkeys(" ".join(line.split())[:100] for line in lines if line))


@dg.asset(
    partitions_def=segments,
    deps=["image_index", brand_images],
    group_name=GROUP,
    kinds={"files"},
    description="One ad per audience segment listed in campaigns/segments.txt: the planner "
    "proposes a pet description, the service retrieves the best photo and composes the ad.",
)
def campaign_ads(
    context: dg.AssetExecutionContext, volume: VolumeResource, milvus: MilvusResource
) -> dg.MaterializeResult:
    from adrag_app.planner import make_planner
    from adrag_app.service import generate_ad

    segment = context.partition_key
    proposal = make_planner().propose(segment)
    if proposal.note:
        context.log.warning(proposal.note)
    context.log.info("%s -> %s (%s)", segment, proposal.description, proposal.reason)
    settings = dataclasses.replace(load_settings(), volume=volume.path)
    ad = generate_ad(
        proposal.description,
        0,
        segment=segment,
        filters=proposal.filters,
        user="campaign_ads",
        settings=settings,
        instance=context.instance,
        index=milvus.get(),
    )
    meta = {k: v for k, v in ad.metadata.items() if isinstance(v, (str, int, float, bool))}
    return dg.MaterializeResult(
        metadata={
            **meta,
            "segment": segment,
            "description": proposal.description,
            "reason": proposal.reason,
            "planner": proposal.source,
            "ad_path": ad.path,
        }
    )


@dg.sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=f"Keeps campaign_ads' partitions equal to {SEGMENTS_FILE} in the volume.",
)
def campaign_segments_sensor(context: dg.SensorEvaluationContext, volume: VolumeResource):
    wanted = read_segments(volume.path)
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
    description="Generate the ad of one audience segment (a partition of campaign_ads).",
)
