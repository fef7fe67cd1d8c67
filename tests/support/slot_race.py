"""Two processes claiming the writers' pool slot at the same instant, round after round."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import types
from pathlib import Path

BARRIER_TIMEOUT_S = 120


def claim_in_rounds(name: str, dagster_home: str, rounds: int, barrier, results) -> None:
    """One contender: each round, claim the slot when the barrier opens, then let it go."""
    os.environ["DAGSTER_HOME"] = dagster_home
    from adrag_assets.defs.resources import POOL
    from adrag_assets.instance import dagster_instance

    with dagster_instance(Path(dagster_home)) as instance:
        storage = instance.event_log_storage
        for n in range(rounds):
            run_id = f"{name}-{n}"
            barrier.wait(BARRIER_TIMEOUT_S)
            status = storage.claim_concurrency_slot(POOL, run_id, "images")
            results.put((n, name, status.is_claimed))
            barrier.wait(BARRIER_TIMEOUT_S)  # both have claimed or been refused
            storage.free_concurrency_slots_for_run(run_id)
            barrier.wait(BARRIER_TIMEOUT_S)  # the slot is free again for the next round


def race(dagster_home: Path, rounds: int) -> dict[int, list[str]]:
    """{round: names of the contenders that got the slot}, from two real processes."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=claim_in_rounds, args=(name, str(dagster_home), rounds, barrier, results)
        )
        for name in ("a", "b")
    ]
    # spawn runs the parent's __main__ file again in each child: in a test worker that may be
    # whatever script ran last there (Streamlit's AppTest runs the app as __main__).
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        for p in procs:
            p.start()
    finally:
        sys.modules["__main__"] = main
    winners: dict[int, list[str]] = {n: [] for n in range(rounds)}
    try:
        for _ in range(2 * rounds):
            n, name, claimed = results.get(timeout=BARRIER_TIMEOUT_S)
            if claimed:
                winners[n].append(name)
        for p in procs:
            p.join(BARRIER_TIMEOUT_S)
            assert p.exitcode == 0, f"contender exited with {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return winners
