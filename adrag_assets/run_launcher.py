"""The run launcher of adrag's own instance (``adrag up``, ``adrag ingest``).

Dagster's default launcher (a code server on this machine starts one worker process per run),
which also tags each run with this host. With PostgreSQL storage the instance may be shared by
several machines, so a run worker's pid means something only on the host that started it:
the tag is how :mod:`adrag_assets.dead_runs` knows a run's worker was one of this machine's,
and may fail the run once that process is gone (a stack stopped or killed mid-run).
"""

from __future__ import annotations

import socket

import dagster as dg
from dagster._core.launcher import LaunchRunContext

from adrag_assets.dead_runs import HOST_TAG


class HostTaggingRunLauncher(dg.DefaultRunLauncher):
    def launch_run(self, context: LaunchRunContext) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, {HOST_TAG: socket.gethostname()})
        super().launch_run(context)
