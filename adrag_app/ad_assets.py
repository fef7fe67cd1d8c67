"""Dagster definitions for the ad side: brand images in, generated ads out.

Neither asset is materialized by a Dagster run. Brand images are uploaded by people, like the
raw photos; each generated ad is reported by the image-gen service
(:func:`adrag_app.service.generate_ad`) with ``report_runless_asset_event``, so it shows up as
a materialization of ``generated_ads`` with its prompt, seed photo, brand image and generator,
downstream of the index it was retrieved from. Add ``AD_ASSETS`` to the code location's
``Definitions(assets=[...])``.
"""

from __future__ import annotations

import dagster as dg

GROUP = "ads"

brand_images = dg.AssetSpec(
    "brand_images",
    group_name=GROUP,
    description="Brand product images under brand/ in the storage volume (PNG, JPEG, WebP; "
    "any depth). The image-gen service composes them into ads; by default it uses the first "
    "one by name. Not materialized by Dagster: people upload them.",
    kinds={"files"},
)

generated_ads = dg.AssetSpec(
    "generated_ads",
    deps=["image_index", brand_images],
    group_name=GROUP,
    description="Ads written by the image-gen service to ads/<date>/ in the volume, a PNG and a "
    "JSON sidecar each. Every ad is one materialization, reported by the service (not a run), "
    "with the segment, prompt, seed photo, brand image, generator, model, encoder and a "
    "thumbnail.",
    kinds={"files"},
)

AD_ASSETS = [brand_images, generated_ads]
