"""A run that takes the pool slot of adrag's writers and keeps it until a file appears.

Run as ``python -m tests.support.pool_holder RELEASE_FILE [--tagged | --launched]`` with the
test's ``ADRAG_*``/``DAGSTER_HOME`` variables: it materializes one asset in the pool
``adrag_index`` on the persistent instance, like a writer step of ``adrag ingest``
(``--tagged``: with its pid and host in the run's tags, as ``adrag ingest`` does) or of a
daemon-launched run (``--launched``: with the host tag adrag's run launcher adds; untagged: a
run from before that launcher, or another launcher's).
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import dagster as dg

from adrag_assets.dead_runs import HOST_TAG, process_tags
from adrag_assets.defs.resources import POOL
from adrag_assets.instance import dagster_instance
from adrag_assets.settings import load_settings

HOLD_AT_MOST_S = 300


@dg.asset(pool=POOL)
def held_slot() -> None:
    release = Path(sys.argv[1])
    deadline = time.monotonic() + HOLD_AT_MOST_S
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.05)


if __name__ == "__main__":
    flags = sys.argv[2:]
    tags = (
        process_tags()
        if "--tagged" in flags
        else {HOST_TAG: socket.gethostname()}
        if "--launched" in flags
        else {}
    )
    with dagster_instance(load_settings().dagster_home) as instance:
        result = dg.materialize([held_slot], instance=instance, tags=tags, raise_on_error=False)
    sys.exit(0 if result.success else 1)
