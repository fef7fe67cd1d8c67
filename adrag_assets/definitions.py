"""The Dagster code location: ``dagster dev`` / ``workspace.yaml`` load ``defs`` from here."""

from __future__ import annotations

import dagster as dg

from adrag_assets.assets import image_embeddings, image_index, images, raw_photos
from adrag_assets.resources import resources_from_settings

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(images, image_embeddings, image_index),
    description="Bring raw/ into Delta, embed what is new, sync the Milvus index.",
)

defs = dg.Definitions(
    assets=[raw_photos, images, image_embeddings, image_index],
    jobs=[ingest_job],
    resources=resources_from_settings(),
)
