"""Ad copy is written for the segment, never quoting it: offline templates and an LLM behind
a real HTTP endpoint (tests/support/fake_llm.py), with its answers checked and repaired."""

from __future__ import annotations

import json

import pytest

from adrag_app.creative.brandkit import default_kit
from adrag_app.creative.copywriter import (
    BannedWords,
    cut_at_word,
    repeats_segment,
    write_copy,
)
from adrag_app.llm import ChatClient
from tests.support.fake_llm import FakeLlm, text

KEY = "sk-test-copy-0123456789"
# Segments that appear in none of the package's data files (planner or copy templates).
SEGMENTS = [
    "night-shift nurses in their thirties living alone",
    "grandparents babysitting on weekends in the suburbs",
    "students sharing a flat near campus",
    "marathon runners who travel for races",
    "families with a newborn and an old labrador",
]


@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("species", ["dog", "cat", "rabbit"])
def test_offline_copy_never_quotes_the_segment(segment: str, species: str):
    kit = default_kit(None)
    for variant in range(3):
        copy = write_copy(kit, {"species": species}, segment=segment, limit=30, variant=variant)
        assert copy.source == "template"
        assert 0 < len(copy.headline) <= 30
        assert not repeats_segment(copy.headline, segment)
        assert segment.lower() not in f"{copy.headline} {copy.primary_text}".lower()
        assert len(copy.primary_text) <= 125 and copy.cta == "Shop now"


def test_variants_get_different_headlines():
    kit = default_kit(None)
    headlines = {write_copy(kit, {"species": "dog"}, variant=v).headline for v in range(3)}
    assert len(headlines) == 3


def test_cut_at_word_never_cuts_mid_word():
    assert cut_at_word("Every single walk feels like the first", 20) == "Every single walk"
    assert cut_at_word("Short", 20) == "Short"
    assert repeats_segment("Made for students sharing a flat", "students sharing a flat near")
    assert not repeats_segment("Happy dogs, easy days", "students sharing a flat near campus")


def _answer(headline: str, primary: str = "Everyday care they can feel.", cta: str = "Shop now"):
    return text(json.dumps({"headline": headline, "primary_text": primary, "cta": cta}))


def test_llm_copy_that_quotes_the_segment_or_runs_long_is_sent_back():
    segment = SEGMENTS[1]
    answers = [
        _answer("Made for grandparents babysitting on weekends"),  # quotes the audience
        _answer("Weekend visits, happy tails, and many more good things"),  # 55 > 30: cut
    ]
    kit = default_kit(None)
    with FakeLlm(KEY, answers) as llm:
        chat = ChatClient(llm.base_url, "copy-model", KEY)
        copy = write_copy(kit, {"species": "dog"}, segment=segment, limit=30, chat=chat)
        # First answer quoted the segment: asked again, naming the problem.
        assert len(llm.requests) == 2
        fix = llm.requests[1]["messages"][-1]["content"]
        assert "repeats the audience" in fix
        assert llm.auth[0] == f"Bearer {KEY}"
    assert copy.source == "llm"
    assert copy.headline == "Weekend visits, happy tails"  # cut at a word, no dangling comma
    assert not repeats_segment(copy.headline, segment)


def test_llm_failure_falls_back_to_templates_and_marketer_headline_wins():
    kit = default_kit(None)
    kit = type(kit)(**{**kit.__dict__, "banned": ("cheap",)})
    with FakeLlm(KEY, [text("not json at all")]) as llm:
        chat = ChatClient(llm.base_url, "copy-model", KEY)
        copy = write_copy(kit, {"species": "cat"}, segment=SEGMENTS[0], chat=chat)
    assert copy.source == "template"
    own = write_copy(kit, {"species": "cat"}, segment=SEGMENTS[0], headline="Nine lives, one bowl")
    assert own.headline == "Nine lives, one bowl" and own.source == "marketer"
    with pytest.raises(BannedWords, match="'cheap'"):
        write_copy(kit, {}, headline="Cheap thrills for cats")
