"""A fault for Ray's workers: the first encoder batch anywhere in the cluster kills its actor.

Installed with Ray's own ``runtime_env={"worker_process_setup_hook": "tests.support.ray_faults
.die_once", "env_vars": {MARKER: path}}``, so the code under test is unchanged: the actor
process exits (as a crash or an OOM kill would end it) right after decoding its first batch,
once per marker file, whichever node it runs on.
"""

from __future__ import annotations

import os

MARKER = "DIE_ONCE_MARKER"  # the file whose creation claims the one death


def die_once() -> None:
    from adrag_assets.embeddings import pipeline

    marker = os.environ[MARKER]  # set by the test, through Ray's runtime_env
    real = pipeline.encode_stream

    def encode_stream(*args, **kwargs):
        for part in real(*args, **kwargs):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                yield part
                continue
            os._exit(1)  # the first one here: die mid-job, with the batch decoded

    pipeline.encode_stream = encode_stream
