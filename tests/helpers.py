"""Running the asset graph in tests, and reading back what it recorded."""

from __future__ import annotations

import dagster as dg

from adrag_assets.assets import image_embeddings, image_index, images
from adrag_assets.milvus_index import MilvusIndex
from adrag_assets.resources import resources_from_settings
from adrag_assets.settings import Settings
from adrag_assets.tables import Tables


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
    assert len(checks) == 3
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
