"""The Dagster code location: every definition in the ``defs/`` folder, one file per stage.

``dg dev``, ``workspace.yaml`` and Dagster+ load ``defs`` from here. Only this module and
``defs/`` may import ``adrag_app`` (the composition root); the library folders never do.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
