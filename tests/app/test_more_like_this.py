"""'More like this' is read as its own answer while a photo is on screen, never as a yes."""

from __future__ import annotations

import pytest

from adrag_app.agent import intents
from adrag_app.agent.agent import AgentState


@pytest.mark.parametrize("text", ["More like this", "more like this one please", "similar ones?"])
def test_more_like_this_is_its_own_intent_with_a_photo_on_screen(text):
    assert intents.parse(text, "showing_candidate").kind == intents.MORE
    assert intents.parse(text, "done").kind == intents.MORE


def test_other_answers_keep_their_meaning():
    assert intents.parse("I like this one", "showing_candidate").kind == intents.YES
    assert intents.parse("a similar beagle on a beach", "showing_candidate").kind == (
        intents.DESCRIPTION
    )
    assert intents.parse("more like this", "proposed").kind != intents.MORE


def test_the_state_keeps_what_the_photos_are_like():
    state = AgentState.from_dict({"like": "abc", "phase": "awaiting_segment"})
    assert AgentState.from_dict(state.to_dict()).like == "abc"
    with pytest.raises(ValueError, match="like"):
        AgentState.from_dict({"like": 3})
