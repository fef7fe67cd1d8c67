"""Batch mode: campaign segments as dynamic partitions, one creative set per segment."""

from __future__ import annotations

import json

import dagster as dg

from adrag_app.creative.placements import load_placements
from adrag_assets.defs.ads import campaign_ads, campaign_segments_sensor, read_segments, segments
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.volume import open_volume
from tests.support.helpers import draw_brand, index_for, run_pipeline


def test_segments_file_drives_partitions_and_each_partition_makes_a_creative_set(
    pets, instance, monkeypatch
):
    monkeypatch.setenv("ADRAG_TRACING", "off")
    run_pipeline(pets, instance)
    index_for(pets).close()
    draw_brand(pets.volume / "brand" / "bottle.png", (20, 120, 200), "PNG")
    seg_file = pets.volume / "campaigns" / "segments.txt"
    seg_file.parent.mkdir()
    seg_file.write_text("# spring campaign\noutdoor-loving dog owners\ncat lovers in small flats\n")
    volume = open_volume(pets.volume)
    assert read_segments(volume) == [
        "outdoor-loving dog owners",
        "cat lovers in small flats",
    ]

    resources = resources_from_settings(pets)
    ctx = dg.build_sensor_context(instance=instance, resources={"volume": resources["volume"]})
    result = campaign_segments_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    for req in result.dynamic_partitions_requests:  # what the daemon does with the result
        instance.add_dynamic_partitions(segments.name, list(req.partition_keys))
    assert set(instance.get_dynamic_partitions(segments.name)) == set(read_segments(volume))

    run = dg.materialize(
        [campaign_ads],
        partition_key="outdoor-loving dog owners",
        resources=resources,
        instance=instance,
    )
    assert run.success
    mat = run.asset_materializations_for_node("campaign_ads")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["segment"] == "outdoor-loving dog owners"
    assert meta["description"]
    # A creative set in every placement, from one photo, with a contact sheet.
    placements = load_placements(volume)
    assert len(meta["creatives"]) == len(placements) and meta["ad_path"] == meta["creatives"][0]
    sidecars = [
        json.loads((pets.volume / p).with_suffix(".json").read_text()) for p in meta["creatives"]
    ]
    assert {s["placement"] for s in sidecars} == set(placements)
    assert {s["set_id"] for s in sidecars} == {meta["set_id"]}
    assert (pets.volume / meta["contact_sheet"]).is_file()
    for sidecar in sidecars:
        assert sidecar["segment"] == "outdoor-loving dog owners"
        # The segment says who the ad is for, never what it says.
        assert "dog owners" not in sidecar["headline"].lower()
        assert sidecar["user"] == "campaign_ads"
        assert (pets.volume / sidecar["path"]).is_file()
    sidecar = sidecars[0]
    # The planner asks for a dog for dog owners, and the species filter runs in Milvus.
    assert sidecar["filters"].get("species") in (None, "dog")
    if sidecar["filters"]:
        assert sidecar["seed_labels"]["species"] == "dog"
    # Every creative of the set is also an ad_creatives materialization (lineage to the photo).
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ad_creatives")), limit=20
    ).records
    assert {r.asset_materialization.metadata["path"].value for r in records} == set(
        meta["creatives"]
    )

    # A segment removed from the file leaves the partitions.
    seg_file.write_text("outdoor-loving dog owners\n")
    result = campaign_segments_sensor(
        dg.build_sensor_context(instance=instance, resources={"volume": resources["volume"]})
    )
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [
        ["cat lovers in small flats"]
    ]
