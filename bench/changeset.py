"""The `images` step for one new photo in a library of N photos: seconds and peak RSS.

Not part of `make test` or `make bench`; run by hand (about a minute at N≈3,000):

    PYTHONPATH=$PWD .venv/bin/python -m bench.changeset [copies ...]   # default: 1 10

For each N (the pet sample times ``copies``, re-encoded copies so each has its own
image_id) it builds a library once, then adds one photo and materializes ``images`` in a
fresh process, twice: as `adrag ingest` does (a full scan) and as the upload sensor asks
for it (the run config naming the one new path). Each line: step seconds (from the run's
event log) and that process's peak RSS, before and during the step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.incremental import variant
from tests.support.data import PETS, pets_images


def build(home: Path, copies: int) -> None:
    raw = home / "volume" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(PETS / "labels.csv", raw / "labels.csv")
    photos = sorted(pets_images().glob("*.jpg"))
    for k in range(copies):
        (raw / f"v{k}").mkdir()
        for p in photos:
            target = raw / f"v{k}" / p.name
            if k == 0:
                shutil.copy(p, target)
            else:
                target.write_bytes(variant(p, k))
    from adrag_assets.images.sync import sync_images
    from adrag_assets.tables import Tables
    from adrag_assets.volume import open_volume

    sync_images(open_volume(home / "volume"), Tables(home / "tables"))


def one_run(home: Path, mode: str) -> dict:
    """In this (fresh) process: add one photo, materialize ``images``; seconds and RSS."""
    import dagster as dg

    from adrag_assets.defs.photos import images
    from adrag_assets.defs.resources import TablesResource, VolumeResource

    new = home / "volume" / "raw" / "new" / "fresh.jpg"
    new.parent.mkdir(exist_ok=True)
    new.write_bytes(variant(sorted(pets_images().glob("*.jpg"))[0], 997))
    run_config = {}
    if mode == "changeset":
        run_config = {"ops": {"images": {"config": {"paths": ["raw/new/fresh.jpg"]}}}}
    before = rss_mb()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:  # ru_maxrss would show the imports' peak, not the step's
        while not stop.wait(0.01):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [images],
            resources={
                "volume": VolumeResource(root=str(home / "volume")),
                "tables": TablesResource(root=str(home / "tables")),
            },
            instance=instance,
            run_config=run_config,
        )
        assert result.success
        times = {
            e.dagster_event.event_type_value: e.timestamp
            for e in instance.all_logs(result.run_id)
            if e.dagster_event
            and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
        }
    stop.set()
    sampler.join()
    mat = result.asset_materializations_for_node("images")[0].metadata
    return {
        "mode": mode,
        "images": mat["dagster/row_count"].value,
        "added": mat["added"].value,
        "step_s": round(times["STEP_SUCCESS"] - times["STEP_START"], 2),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(peak[0]),
        "rss_step_mb": round(peak[0] - before),
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one_run(Path(argv[1]), argv[2])))
        return
    modes = [m for m in ("full", "changeset") if m in os.environ.get("MODES", "full changeset")]
    for copies in [int(a) for a in argv] or [1, 10]:
        with tempfile.TemporaryDirectory(prefix="adrag-changeset-") as tmp:
            # A library is built once and kept (in /tmp), so before/after runs share it.
            base = Path(tempfile.gettempdir()) / f"adrag-changeset-lib-{copies}"
            if not (base / "tables").is_dir():
                shutil.rmtree(base, ignore_errors=True)
                build(base, copies)
            n = 296 * copies
            for mode in modes:
                home = Path(tmp) / mode
                shutil.copytree(base, home, symlinks=True)
                out = subprocess.run(
                    [sys.executable, "-m", "bench.changeset", "--one", str(home), mode],
                    capture_output=True,
                    text=True,
                )
                if out.returncode:
                    print(f"N={n} {mode}: failed\n{out.stderr[-2000:]}")
                    continue
                print(json.dumps({"N": n, **json.loads(out.stdout.splitlines()[-1])}))


if __name__ == "__main__":
    main(sys.argv[1:])
