"""`make bench`, part 4: one brief -> 5 placements x 3 variants of campaign creatives.

Wall time of ``make_creatives(brief, "all", 3)`` in-process, end to end (search, copy,
layout, PNG encoding, atomic writes, Dagster events and checks): the first call (fonts,
encoder and collection loading) and the median of the next ``REPS``; then the same through
Replicate's wire protocol against the test server (tests/support/fake_replicate.py; one
generation per aspect ratio, so 4 x 3 predictions per brief; the server answers at once, so
the figure is adrag's own overhead, not a model's).

A home is built with `adrag ingest` from the first ``ADRAG_BENCH_CREATIVE_PHOTOS`` (64) pet
photos with the tiny random encoder (the ranking does not matter here, only the work).
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
from PIL import Image

from bench.search_latency import build_home

BRIEF = "a happy dog in a garden"
SEGMENT = "busy parents who walk their dog before work"
REPS = 3


def _draw_product(path: Path) -> None:
    from PIL import ImageDraw

    image = Image.new("RGBA", (240, 360), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((50, 60, 190, 340), radius=24, fill=(32, 110, 190))
    draw.rectangle((95, 20, 145, 60), fill=(32, 110, 190))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _timed(run) -> tuple[float, list[float], float]:
    """First wall time, the next ``REPS`` wall times, and their median CPU time (this
    process, both threads): on a shared machine the CPU figure is the one that does not
    depend on the neighbours."""
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    warm, cpu = [], []
    for _ in range(REPS):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        warm.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, warm, statistics.median(cpu)


def main() -> None:
    from adrag_app.generators import LocalCompositor, ReplicateGenerator
    from adrag_app.service.creatives import make_creatives
    from adrag_assets.index.milvus import MilvusIndex
    from adrag_assets.settings import GeneratorSettings, load_settings
    from tests.support.fake_replicate import FakeReplicate, Scenario

    n_photos = int(os.environ.get("ADRAG_BENCH_CREATIVE_PHOTOS", "64"))
    with tempfile.TemporaryDirectory(prefix="adrag-bench-creatives-") as tmp:
        home = Path(tmp)
        env = build_home(home, n_photos, "random:adrag-tiny")
        os.environ.update({**env, "ADRAG_TRACING": "false"})
        settings = load_settings()
        _draw_product(settings.volume / "brand" / "bottle.png")
        index = MilvusIndex(settings.milvus_uri, settings.milvus_token, settings.index_alias)
        with dg.DagsterInstance.get() as instance:

            def offline() -> None:
                made = make_creatives(
                    BRIEF,
                    "all",
                    3,
                    segment=SEGMENT,
                    settings=settings,
                    instance=instance,
                    index=index,
                    generator=LocalCompositor(),
                )
                assert len(made) == 15

            first, warm, cpu = _timed(offline)
            print(
                f"creatives offline: 1 brief x 5 placements x 3 variants = 15 creatives: "
                f"first {first:.1f} s, then median {statistics.median(warm):.1f} s "
                f"(runs: {', '.join(f'{w:.1f}' for w in warm)}; CPU {cpu:.1f} s; "
                f"goal < 10 s; load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )

            token = "r8_BenchTokenForTheFakeServer0123456789"
            buffer = io.BytesIO()
            photo = sorted((settings.raw_dir).glob("*.jpg"))[0]
            Image.open(photo).convert("RGB").resize((1024, 1024)).save(buffer, "PNG")
            with FakeReplicate(token, Scenario(output=buffer.getvalue())) as api:
                generator = ReplicateGenerator(
                    GeneratorSettings(replicate_api_token=token, replicate_base_url=api.base_url)
                )

                def replicate() -> None:
                    made = make_creatives(
                        BRIEF,
                        "all",
                        3,
                        segment=SEGMENT,
                        settings=settings,
                        instance=instance,
                        index=index,
                        generator=generator,
                    )
                    assert len(made) == 15

                first, warm, cpu = _timed(replicate)
                per_brief = len(api.creates) // (REPS + 1)
            print(
                f"creatives via Replicate's protocol (test server, {per_brief} predictions a "
                f"brief): first {first:.1f} s, then median {statistics.median(warm):.1f} s "
                f"(CPU {cpu:.1f} s)",
                flush=True,
            )
        index.close()


if __name__ == "__main__":
    main()
