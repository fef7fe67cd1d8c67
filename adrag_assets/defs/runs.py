"""Runs: the sensor that fails runs whose process died and frees the pool slots they held.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.dead_runs import recover_dead_runs


@dg.sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Fails runs whose process is gone (killed, out of memory, the stack stopped "
    "with SIGKILL) and frees the adrag_index pool slots they held, so the next run can write.",
)
def dead_runs_sensor(context: dg.SensorEvaluationContext):
    recovered = recover_dead_runs(context.instance)
    for r in recovered:
        context.log.warning(r.line)
    if not recovered:
        return dg.SkipReason("no run whose process is gone")
    return dg.SkipReason("; ".join(r.line for r in recovered))
