"""When a photo was taken: EXIF date, camera and GPS kept per photo; `adrag search
--taken-after/--taken-before`, the service's filters and the agent's "taken in 2024" narrow
a search to a date range. Real ingest, Delta tables, Milvus Lite, the tiny real CLIP (the
pipeline's library steps, without a Dagster run)."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from adrag_app.agent.agent import SHOWING, Agent, AgentState
from adrag_app.cli import main as adrag_main
from adrag_app.planner.planner import BuiltinPlanner
from adrag_app.service.ad_service import retrieve
from adrag_app.service.tool import ServiceTool
from adrag_assets.images import decode as dec
from adrag_assets.images.sync import sync_images
from adrag_assets.images.taken import TakenRange, ids_taken
from adrag_assets.index.search import search
from adrag_assets.volume import open_volume
from tests.assets.test_fast_commands import build_and_switch
from tests.support.data import TEST_ENCODER, pets_images, read_images
from tests.support.helpers import index_for, tables_for

EXIF_IFD, GPS_IFD, TAKEN, MAKE = 0x8769, 0x8825, 0x9003, 0x010F
# Beagles in summer 2024 (the first with a GPS position), pugs in March 2023.
WHEN = {"beagle": "2024:07:{:02d} 10:00:00", "pug": "2023:03:{:02d} 18:30:00"}


def dated(source: Path, stamp: str, gps: bool = False) -> bytes:
    """``source`` re-saved with an EXIF capture time (and a GPS position)."""
    exif = Image.Exif()
    exif[MAKE] = "Canon"
    exif.get_ifd(EXIF_IFD)[TAKEN] = stamp
    if gps:
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)})
    with Image.open(source) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


@pytest.fixture
def library(settings):
    """Four beagles of July 2024, four pugs of March 2023 and two undated beagles, labelled."""
    pets = settings.raw_dir / "pets"
    pets.mkdir()
    rows = []
    for breed, stamp in WHEN.items():
        for n, p in enumerate(sorted(pets_images().glob(f"{breed}_*.jpg"))[:4], 1):
            (pets / p.name).write_bytes(dated(p, stamp.format(n), gps=n == 1 and breed == "beagle"))
            rows.append(f"{p.name},{breed},dog")
    for p in sorted(pets_images().glob("beagle_*.jpg"))[4:6]:
        (pets / p.name).write_bytes(p.read_bytes())
        rows.append(f"{p.name},beagle,dog")
    (settings.raw_dir / "labels.csv").write_text("file,breed,species\n" + "\n".join(rows) + "\n")
    # The pipeline's steps without a Dagster run: ingest, embed, index, go live.
    sync_images(open_volume(settings.volume_uri), tables_for(settings))
    build_and_switch(settings, TEST_ENCODER)
    return settings


def test_decode_keeps_whether_a_photo_has_a_gps_position():
    src = sorted(pets_images().glob("beagle_*.jpg"))[0]
    with_gps = dec.decode("a.jpg", dated(src, "2024:07:01 10:00:00", gps=True))
    assert with_gps.has_gps and with_gps.taken_at.date() == date(2024, 7, 1)
    assert not dec.decode("b.jpg", dated(src, "2024:07:01 10:00:00")).has_gps
    assert not dec.decode("c.jpg", src.read_bytes()).has_gps


def test_a_date_range_narrows_search_the_cli_the_service_and_the_agent(library, monkeypatch):
    s = library
    t = tables_for(s)
    rows = read_images(t, ["image_id", "labels", "taken_at", "has_gps"]).to_pylist()
    by_breed = {}
    for r in rows:
        by_breed.setdefault(json.loads(r["labels"])["breed"], []).append(r)
    assert sum(r["has_gps"] for r in rows) == 1 and len(rows) == 10
    summer24 = {r["image_id"] for r in by_breed["beagle"] if r["taken_at"]}
    assert len(summer24) == 4
    in_2024 = TakenRange(date(2024, 1, 1), date(2025, 1, 1))
    assert set(ids_taken(t, in_2024)) == summer24  # undated photos are in no range

    index = index_for(s)
    try:
        # The range narrows inside Milvus: k photos of the range, none outside it.
        hits = search(index, "a beagle", k=6, taken=in_2024)
        assert {h.image_id for h in hits} == summer24
        assert len(search(index, "a beagle", k=6)) == 6  # without it: the undated ones too
        # Pugs were taken in 2023: among the photos of 2024, "pug" has no good match (the
        # relevance floor is asked of the photos the range lets through), not the beagles.
        assert search(index, "pug", k=6, taken=in_2024) == []
        assert search(index, "a beagle", k=3, taken=TakenRange(None, date(2020, 1, 1))) == []
    finally:
        index.close()

    runner = CliRunner()
    args = ["search", "beagle", "-k", "6", "--json", "--taken-after", "2024-06-01"]
    out = runner.invoke(adrag_main, [*args, "--taken-before", "2024-09-01"])
    assert out.exit_code == 0, out.output
    assert {h["image_id"] for h in json.loads(out.stdout)} == summer24
    out = runner.invoke(adrag_main, [*args[:-1], "2030-01-01"])
    assert out.exit_code == 0 and json.loads(out.stdout) == []
    assert "no photo was taken on or after 1 Jan 2030" in out.stderr
    bad = runner.invoke(
        adrag_main, [*args[:-2], "--taken-after", "2024-09-01"] + ["--taken-before", "2024-06-01"]
    )
    assert bad.exit_code == 2 and "on or after the day it ends" in bad.output

    # The service carries the range among its filters, beside the labels.
    found = retrieve("a dog", 3, {"species": "dog", "taken_after": "2023-01-01",
                                  "taken_before": "2024-01-01"}, settings=s)  # fmt: skip
    assert {c.labels["breed"] for c in found} == {"pug"}
    with pytest.raises(ValueError, match="taken_after must be a day as YYYY-MM-DD"):
        retrieve("a dog", 3, {"taken_after": "last summer"}, settings=s)

    # The agent reads the date from the marketer's words and shows the range back.
    monkeypatch.setenv("ADRAG_TRACING", "off")
    agent = Agent(ServiceTool(s), BuiltinPlanner(), user="tester")
    state, reply = agent.handle(AgentState(), "show me a beagle taken in 2024")
    assert "Only photos taken 1 Jan 2024 – 31 Dec 2024 (2024)." in reply.text
    assert reply.phase == SHOWING and reply.candidate["image_id"] in summer24
    assert reply.tool_calls[-1].context["filters"]["taken_after"] == "2024-01-01"
    assert {c["image_id"] for c in state.candidates} <= summer24
    # A date alone searches the same idea again, in that range.
    state, reply = agent.handle(state, "only photos from March 2023")
    assert "taken 1 Mar 2023 – 31 Mar 2023 (March 2023)" in reply.text
    assert "no good match for **a beagle** among the photos taken 1 Mar 2023" in reply.text
    state, reply = agent.handle(state, "any time")
    assert state.taken == {} and reply.phase == SHOWING
    assert any(c["image_id"] not in summer24 for c in state.candidates)
