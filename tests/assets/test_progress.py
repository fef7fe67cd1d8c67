"""Progress of an embedding job: Dagster metadata per batch, a log line with rate and ETA, the
bar of `adrag ingest`, and "re-embedding 4,200 / 20,000, about 6 min left" in `adrag status`
and the app's sidebar, from the JSON the run keeps under the home. A real Dagster run over
real photos with the tiny CLIP; a model switch re-embeds them."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
from click.testing import CliRunner

from adrag_app.cli import main as adrag_main
from adrag_app.ui.support import embedding_news
from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings import sync as embed_sync
from adrag_assets.embeddings.progress import (
    REEMBEDDING,
    EmbedProgress,
    Progress,
    progress_path,
    read_progress,
)
from adrag_assets.settings import load_settings
from tests.support.data import copy_few_pets


class Terminal(io.StringIO):
    """stderr as a terminal: tqdm draws its bar only there."""

    def isatty(self) -> bool:
        return True


def test_the_line_counts_rate_and_time_left(tmp_path):
    now = [0.0]
    seen: list[EmbedProgress] = []
    p = Progress(tmp_path, on_commit=seen.append, clock=lambda: now[0])
    p.start("clip@1", REEMBEDDING, 4000, 20000)
    now[0] = 4.5
    p.advance(200)  # 200 in 4.5 s: 44 a second, 15,800 left
    assert p.commit() is seen[-1]
    report = read_progress(tmp_path)
    assert report == seen[-1] and report.line() == "re-embedding 4,200 / 20,000, about 6 min left"
    # No news for a while (the run was killed): said with the report's age.
    later = datetime.fromisoformat(report.updated_at) + timedelta(minutes=12)
    assert report.line(later).endswith("(no news for 12 min)")
    p.finish()
    assert read_progress(tmp_path).line() == "re-embedding 4,200 / 20,000, done"
    progress_path(tmp_path).write_text("{not json")
    assert read_progress(tmp_path) is None  # never an error for a progress line


def test_a_run_and_a_model_switch_report_per_batch(settings, instance, monkeypatch):
    n = copy_few_pets(settings.raw_dir, ("beagle", "pug"))
    monkeypatch.setenv("ADRAG_BATCH_SIZE", "4")
    monkeypatch.setattr(embed_sync, "WRITE_EVERY", 4)  # a Delta commit every batch

    def embed(terminal: Terminal) -> list[dict]:
        s = load_settings()
        monkeypatch.setattr(sys, "stderr", terminal)
        try:
            result = dg.materialize(
                [images, image_embeddings], resources=resources_from_settings(s), instance=instance
            )
        finally:
            monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        assert result.success
        return [
            {k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()}
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        ]

    first = embed(Terminal())
    assert [o["done"] for o in first] == list(range(4, n + 1, 4)) and first[-1]["total"] == n
    assert first[-1]["progress"] == f"embedding {n} / {n}"
    assert read_progress(settings.home).line() == f"embedding {n} / {n}, done"
    assert embedding_news(settings) is None  # the sidebar says nothing once it is done

    # A model switch re-embeds the library: said so, counted to the whole library, with a
    # rate and a bar on the terminal.
    monkeypatch.setenv("ADRAG_ENCODER", "random:adrag-tiny@1")
    terminal = Terminal()
    switch = embed(terminal)
    assert switch[0]["progress"].startswith(f"re-embedding 4 / {n}, about ")
    assert all(o["images_per_s"] > 0 and o["eta_s"] >= 0 for o in switch[:-1])
    assert switch[-1]["eta_s"] == -1  # nothing left
    bar = terminal.getvalue()
    assert "re-embedding" in bar and f"{n}/{n}" in bar

    # `adrag status` and the sidebar read the file the run keeps; here one still running.
    report = read_progress(settings.home)
    assert (report.kind, report.done, report.total) == (REEMBEDDING, n, n)
    running = {**json.loads(progress_path(settings.home).read_text()), "state": "running"}
    running.update(done=4200, total=20000, rate=44.5, updated_at=datetime.now(UTC).isoformat())
    progress_path(settings.home).write_text(json.dumps(running))
    line = "re-embedding 4,200 / 20,000, about 6 min left"
    assert embedding_news(load_settings()) == line
    out = CliRunner().invoke(adrag_main, ["status"])
    assert out.exit_code == 0 and f"embedding_progress    {line}" in out.stdout
    as_json = json.loads(CliRunner().invoke(adrag_main, ["status", "--json"]).stdout)
    assert as_json["embedding_progress"]["line"] == line
