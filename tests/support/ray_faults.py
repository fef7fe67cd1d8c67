"""A fault for Ray's workers: the first encoder batch anywhere in the cluster kills its actor.

Installed with Ray's own ``runtime_env={"worker_process_setup_hook": ...}``, so the code under
test is unchanged: the actor process exits (as a crash or an OOM kill would end it) right after
decoding its first batch, once per marker file, whichever node it runs on.
"""

from __future__ import annotations

import os


def die_once(marker: str) -> None:
    from adrag_assets.embeddings import sync

    real = sync.prepare

    def prepare(encoder, batch):
        prepared = real(encoder, batch)
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return prepared
        os._exit(1)  # the first one here: die mid-job, with the batch half done

    sync.prepare = prepare
