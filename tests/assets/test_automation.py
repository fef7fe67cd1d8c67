"""Every automation condition has a running sensor. That the daemon acts on them (uploads,
deletes and a model switch refresh near_duplicates and retrieval_eval) is watched on the real
stack in tests/e2e/test_stack_e2e.py, which runs one anyway.
"""

from __future__ import annotations

import dagster as dg

from adrag_assets.definitions import defs


def test_one_running_automation_sensor_covers_every_condition():
    repo = defs().get_repository_def()
    graph = repo.asset_graph
    automated = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert {"near_duplicates", "retrieval_eval", "image_embeddings", "image_index"} <= {
        k.to_user_string() for k in automated
    }
    sensors = [s for s in repo.sensor_defs if isinstance(s, dg.AutomationConditionSensorDefinition)]
    # Dagster adds its default sensor (which starts STOPPED) only for assets no sensor targets.
    assert [s.name for s in sensors] == ["adrag_automation"]
    assert sensors[0].default_status == dg.DefaultSensorStatus.RUNNING
    assert automated <= sensors[0].asset_selection.resolve(graph)
