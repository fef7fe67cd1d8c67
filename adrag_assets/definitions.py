"""The Dagster code location: ``dagster dev`` / ``workspace.yaml`` load ``defs`` from here."""

from __future__ import annotations

import dagster as dg

from adrag_app.ad_assets import AD_ASSETS
from adrag_app.campaign import campaign_ads, campaign_job, campaign_segments_sensor
from adrag_assets.assets import encoder_model, image_embeddings, image_index, images, raw_photos
from adrag_assets.resources import resources_from_settings
from adrag_assets.sensors import raw_photos_sensor

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(images, image_embeddings, image_index),
    description="Bring raw/ into Delta, embed what is new, sync the Milvus index.",
    # One process for the whole run: the model loads once, not once per step.
    executor_def=dg.in_process_executor,
)

# Dagster's default automation sensor starts stopped; this one runs by default, so a new
# encoder (code version) or new images re-embed and re-index with nobody clicking.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "adrag_automation",
    target=dg.AssetSelection.assets(image_embeddings, image_index),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

defs = dg.Definitions(
    assets=[
        raw_photos,
        images,
        image_embeddings,
        image_index,
        encoder_model,
        *AD_ASSETS,
        campaign_ads,
    ],
    jobs=[ingest_job, campaign_job],
    sensors=[raw_photos_sensor, automation_sensor, campaign_segments_sensor],
    resources=resources_from_settings(),
)
