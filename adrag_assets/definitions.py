"""The Dagster code location: every definition in the ``defs/`` folder, one file per stage.

``dg dev``, ``workspace.yaml`` and Dagster+ load ``defs`` from here. Only this module and
``defs/`` may import ``adrag_app`` (the composition root); the library folders never do.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # Every run in one process, as ingest_job already does: each step of a multiprocess
        # run would import torch and load the model again (runs the automation sensor or the
        # UI launch would pay ~7 s per step for nothing; the writers' pool already
        # serialises what must not overlap).
        dg.Definitions(executor=dg.in_process_executor),
    )
