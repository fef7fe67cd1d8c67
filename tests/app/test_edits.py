"""Edits in the conversation: each a new version of the ad recording its parent, no new search.

The phrasings (tests/app/data/edit_phrasings.yaml) are read in their phase; a conversation of
edits runs against the fake tool (the policy under test), then against the real service over
the session's indexed pet photos (pixels and sidecars), and through ``adrag chat --json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from adrag_app.agent import intents
from adrag_app.agent.agent import DONE, PROPOSED, SHOWING, Agent, AgentState, Reply
from adrag_app.planner.facts import default_facts, named_breed
from adrag_app.planner.planner import BuiltinPlanner, normalise
from adrag_app.service.tool import ServiceTool, check_edits, merge_spec
from tests.support.app_home import CLEARED, IndexedHome, indexed_home, using_env
from tests.support.fake_tool import FakeTool

DATA = Path(__file__).parent / "data" / "edit_phrasings.yaml"
LANGUAGE = Path(__file__).parents[2] / "adrag_app" / "agent" / "language.json"
ADRAG = Path(sys.executable).parent / "adrag"


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADRAG_TRACING", "off")
    for key in ("ADRAG_LLM_BASE_URL", "ADRAG_LLM_MODEL", "ADRAG_LLM_API_KEY"):
        monkeypatch.delenv(key, raising=False)


def cases() -> list[tuple[str, dict]]:
    data = yaml.safe_load(DATA.read_text())
    return [(phase, case) for phase, items in data.items() for case in items]


class Chat:
    """Turn by turn, each state through JSON as in the app."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.state = AgentState()

    def say(self, message: str) -> Reply:
        before = self.state.to_dict()
        state, reply = self.agent.handle(self.state, message)
        assert self.state.to_dict() == before
        self.state = AgentState.from_dict(json.loads(json.dumps(state.to_dict())))
        assert reply.phase == self.state.phase
        return reply


# -- reading ----------------------------------------------------------------------------------


def test_the_phrasings_are_many_and_not_copied_from_the_language_file() -> None:
    found = cases()
    assert len(found) >= 50
    phrases = set()

    def collect(node: object) -> None:
        if isinstance(node, str):
            phrases.add(normalise(node))
        elif isinstance(node, list):
            for item in node:
                collect(item)
        elif isinstance(node, dict):
            for item in node.values():
                collect(item)

    collect(json.loads(LANGUAGE.read_text())["edits"])
    held_out = [c["say"] for _, c in found[18:] if c.get("intent", "edit") == "edit"]
    assert len(held_out) >= 15
    assert not [m for m in held_out if normalise(m) in phrases]


@pytest.mark.parametrize(("phase", "case"), cases(), ids=[c["say"][:40] for _, c in cases()])
def test_edits_are_read_as_data_in_their_phase(phase: str, case: dict) -> None:
    intent = intents.parse(case["say"], phase)
    assert intent.kind == case.get("intent", intents.EDIT), intent
    if "edits" in case:
        assert intent.edits == case["edits"]
        assert check_edits(intent.edits) == case["edits"]  # what the tool accepts
    if "text" in case:
        assert intent.text == case["text"]


def test_specs_accumulate_and_opposite_tones_cancel() -> None:
    spec = merge_spec({}, {"headline": "Home at last", "tone": ["warmer"]})
    spec = merge_spec(spec, {"product": {"scale": 1.25}, "tone": ["brighter"]})
    spec = merge_spec(spec, {"product": {"scale": 1.25, "position": "left"}, "tone": ["cooler"]})
    assert spec == {
        "headline": "Home at last",
        "tone": ["brighter"],
        "product": {"scale": 1.562, "position": "left"},
    }
    for bad in ({}, {"tone": ["sepia"]}, {"product": {"scale": 9}}, {"headline": ""}, {"x": 1}):
        with pytest.raises(ValueError):
            check_edits(bad)


# -- the conversation, against the fake tool ---------------------------------------------------


@pytest.fixture
def tool(tmp_path: Path) -> FakeTool:
    return FakeTool(tmp_path / "volume")


def _made_ad(chat: Chat, segment: str = "families with young children") -> Reply:
    chat.say(segment)
    chat.say("yes")
    reply = chat.say("yes")
    assert reply.phase == DONE and reply.ad["version"] == 1 and reply.ad["parent"] == ""
    return reply


def test_a_conversation_of_edits_makes_versions_with_parents(tool: FakeTool) -> None:
    chat = Chat(Agent(tool, BuiltinPlanner()))
    first = _made_ad(chat).ad
    searches = len(tool.searches())
    steps = [
        ("make it warmer and add the headline 'Home at last'", {"headline", "tone"}),
        ("can I get this as an Instagram story?", {"placement"}),
        ("move the product to the left", {"product"}),
        ("make the bottle bigger", {"product"}),
        ("another variant", {"variant"}),
    ]
    made = [first]
    for message, kinds in steps:
        reply = chat.say(message)
        assert reply.intent == "edit" and set(reply.edits) == kinds, (message, reply.text)
        assert reply.phase == DONE and reply.ad["path"] != made[-1]["path"]
        assert reply.ad["parent"] == made[-1]["path"]
        assert reply.ad["version"] == made[-1]["version"] + 1
        assert (tool.volume / reply.ad["path"]).is_file()
        made.append(reply.ad)
    assert len(tool.searches()) == searches  # an edit never searches again
    assert len(tool.generations()) == 1  # nor makes an ad from a photo again
    assert made[-1]["spec"] == {
        "headline": "Home at last",
        "tone": ["warmer"],
        "placement": ["story"],
        "product": {"position": "left", "scale": 1.25},
        "variant": 1,
    }
    # What the tool was asked: the version on screen and only the new edits.
    parents = [ad["path"] for ad, _, _ in tool.edits]
    assert parents == [a["path"] for a in made[:-1]]
    assert tool.edits[0][1] == {"headline": "Home at last", "tone": ["warmer"]}

    # Undo walks back through the versions; nothing is deleted.
    for expected in reversed(made[:-1]):
        reply = chat.say("undo")
        assert reply.intent == "undo" and reply.ad["path"] == expected["path"], reply.text
    assert len(chat.state.versions) == len(made)
    assert all((tool.volume / a["path"]).is_file() for a in made)
    # Past the first version: back to the photo it was made from.
    reply = chat.say("undo")
    assert reply.phase == SHOWING and reply.candidate is not None

    # An edit after an undo branches from the version on screen.
    chat.say("yes")
    chat.say("undo")  # (the new ad's first version has no parent: to its photo again)
    chat.say("yes")
    reply = chat.say("headline: Home at last")
    assert reply.ad["parent"] == chat.state.versions[-2]["path"]


def test_an_edit_with_a_photo_on_screen_makes_the_ad_then_changes_it(tool: FakeTool) -> None:
    chat = Chat(Agent(tool, BuiltinPlanner()))
    chat.say("retirees")
    chat.say("yes")
    reply = chat.say("yes, with the headline 'Home at last'")
    assert reply.phase == DONE and reply.intent == "edit"
    assert len(tool.generations()) == 1 and len(tool.edits) == 1
    assert reply.ad["version"] == 2 and reply.ad["parent"] == chat.state.versions[0]["path"]
    assert reply.ad["spec"] == {"headline": "Home at last"}


def test_a_segment_switch_proposes_for_the_new_segment_and_its_ad_carries_it(
    tool: FakeTool,
) -> None:
    chat = Chat(Agent(tool, BuiltinPlanner()))
    _made_ad(chat, "young urban couples who just adopted a rescue cat")
    reply = chat.say("now another ad, this time for retirees who love small dogs")
    assert reply.intent == "segment" and reply.phase == PROPOSED
    assert chat.state.segment == "retirees who love small dogs"
    assert chat.state.ad is None and chat.state.versions == []
    facts = default_facts().breeds[
        named_breed(reply.proposal["description"], default_facts().breeds)
    ]
    assert (facts.species, facts.size) == ("dog", "small")
    chat.say("yes")
    reply = chat.say("yes")
    assert reply.phase == DONE
    arguments, context = tool.calls[-1]
    assert arguments["generate"] and context.segment == "retirees who love small dogs"
    assert context.filters == {"species": "dog"}


def test_an_edit_the_tool_cannot_draw_is_said_and_changes_nothing(tool: FakeTool) -> None:
    tool.unsupported = {"placement", "product"}
    chat = Chat(Agent(tool, BuiltinPlanner()))
    first = _made_ad(chat).ad
    reply = chat.say("as an Instagram story please")
    assert reply.intent == "edit" and reply.error == "edit_unsupported"
    assert "placement" in reply.text and chat.state.ad["path"] == first["path"]
    assert len(chat.state.versions) == 1
    # Mixed: what can be drawn is, the rest is said.
    reply = chat.say("make it warmer and move the bottle to the left")
    assert reply.ad["parent"] == first["path"] and reply.ad["spec"]["tone"] == ["warmer"]
    assert any("product" in n for n in reply.notes) and reply.text.startswith("Done: warmer.")


def test_a_tool_without_edits_says_so(tmp_path: Path) -> None:
    class NoEdits(FakeTool):
        edit_ad = None  # type: ignore[assignment]

    chat = Chat(Agent(NoEdits(tmp_path / "volume"), BuiltinPlanner()))
    first = _made_ad(chat).ad
    reply = chat.say("make it warmer")
    assert "cannot change" in reply.text and chat.state.ad == first


# -- the real service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> IndexedHome:
    return indexed_home(request, tmp_path_factory)


def _rgb_means(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


def _sidecar(volume: Path, creative: dict) -> dict:
    return json.loads((volume / creative["sidecar"]).read_text())


def test_the_service_tool_makes_creative_sets_and_each_edit_a_version_with_parents(
    home: IndexedHome,
) -> None:
    with using_env({**home.env, "ADRAG_TRACING": "off"}):
        settings = home.settings()
        volume = Path(settings.volume)
        chat = Chat(Agent(ServiceTool(settings), BuiltinPlanner(), user="tester"))
        first = _made_ad(chat).ad
        # The default set: the feed and a story of the chosen photo, real files and sidecars.
        assert [(c["placement"], c["width"], c["height"]) for c in first["creatives"]] == [
            ("meta_feed", 1080, 1350),
            ("story", 1080, 1920),
        ]
        for creative in first["creatives"]:
            with Image.open(volume / creative["path"]) as im:
                assert im.size == (creative["width"], creative["height"])
            meta = _sidecar(volume, creative)
            assert meta["version"] == 1 and meta["parent"] is None
            assert meta["segment"] == "families with young children"
            assert "families" not in meta["headline"].lower()  # copy for them, not about them
        original = (volume / first["path"]).read_bytes()

        warmer = chat.say("make it warmer and add the headline 'Home at last'").ad
        assert len(warmer["creatives"]) == 2
        for old, new in zip(first["creatives"], warmer["creatives"], strict=True):
            meta = _sidecar(volume, new)
            assert meta["parent"] == old["path"] and meta["version"] == 2
            assert meta["headline"] == "Home at last" and meta["placement"] == old["placement"]
            assert meta["seed_image_id"] == first["seed"]["image_id"]  # the same photo
            assert meta["render"]["look"]["warmth"] > 0
            assert hashlib.sha256((volume / new["path"]).read_bytes()).hexdigest() == meta["sha256"]
        before, after = _rgb_means(volume / first["path"]), _rgb_means(volume / warmer["path"])
        assert after[0] > before[0] + 2 and after[2] < before[2] - 2  # redder, less blue

        story = chat.say("can I get this as an Instagram story?")
        assert story.intent == "edit" and not story.error, story.text
        (made,) = story.ad["creatives"]
        meta = _sidecar(volume, made)
        assert (meta["placement"], meta["width"], meta["height"]) == ("story", 1080, 1920)
        assert meta["parent"] == warmer["path"] and meta["headline"] == "Home at last"

        bigger = chat.say("move the bottle to the left and make it bigger").ad
        meta = _sidecar(volume, bigger["creatives"][0])
        assert meta["parent"] == made["path"]
        assert meta["render"]["look"]["product_position"] == "left"
        assert meta["render"]["look"]["product_scale"] > 1

        variant = chat.say("another variant").ad
        meta = _sidecar(volume, variant["creatives"][0])
        assert meta["parent"] == bigger["path"]
        assert meta["version"] == _sidecar(volume, bigger["creatives"][0])["version"] + 1
        assert meta["seed_image_id"] != first["seed"]["image_id"]  # the next photo
        assert meta["headline"] == "Home at last"  # earlier edits stay
        assert meta["render"]["look"]["product_position"] == "left"

        assert chat.say("undo").ad["path"] == bigger["path"]
        assert chat.say("undo").ad["path"] == story.ad["path"]
        assert (volume / first["path"]).read_bytes() == original  # the parent untouched
        assert all(
            (volume / c["path"]).is_file() for v in chat.state.versions for c in v["creatives"]
        )

        # A segment switch: the next set's copy is written for the new segment.
        chat.say("now another ad, this time for retirees who love small dogs")
        chat.say("yes")
        retirees = chat.say("yes").ad
        meta = _sidecar(volume, retirees["creatives"][0])
        assert meta["segment"] == "retirees who love small dogs" and meta["parent"] is None
        assert "retirees" not in meta["headline"].lower()


def test_adrag_chat_reads_edits_not_answers_or_segments(home: IndexedHome) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(home.env, ADRAG_TRACING="off", PYTHONPATH=str(Path(__file__).parents[2]))
    lines = [
        "yes",
        "yes",
        "make it warmer and add the headline 'Home at last'",
        "can I get this as an Instagram story?",
        "undo",
        "now another ad, this time for retirees who love small dogs",
    ]
    done = subprocess.run(
        [str(ADRAG), "chat", "--json", "--segment", "families with young children"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["intent"] for r in replies] == [
        "segment", "yes", "yes", "edit", "edit", "undo", "segment",
    ]  # fmt: skip
    first, edited = replies[2]["ad"]["path"], replies[3]["ad"]["path"]
    assert edited != first
    volume = Path(home.settings().volume)
    meta = json.loads((volume / edited.replace(".png", ".json")).read_text())
    assert meta["parent"] == first and meta["headline"] == "Home at last"
    story = replies[4]["ad"]
    assert replies[4]["phase"] == "done" and not replies[4]["error"]
    assert [(c["placement"], c["parent"]) for c in story["creatives"]] == [("story", edited)]
    assert replies[5]["ad"]["path"] == edited
    assert replies[6]["phase"] == "proposed" and "retirees" in replies[6]["text"]
    breed = named_breed(replies[6]["text"], default_facts().breeds)
    assert default_facts().breeds[breed].size == "small"


def test_with_a_model_driving_edits_are_still_data_for_the_tool(tool: FakeTool) -> None:
    from adrag_app.agent.llm_agent import LlmAgent, make_agent
    from adrag_assets.settings import LlmSettings
    from tests.support.fake_llm import FakeLlm, text

    chat = Chat(Agent(tool, BuiltinPlanner()))
    first = _made_ad(chat).ad
    with FakeLlm("sk-edits", [text("Sure, anything else?")]) as llm:
        settings = LlmSettings(base_url=llm.base_url, model="tiny", api_key="sk-edits")
        agent = make_agent(tool, BuiltinPlanner(), settings, user="tester")
        assert isinstance(agent, LlmAgent)
        chat.agent = agent
        reply = chat.say("make it warmer and add the headline 'Home at last'")
        assert not llm.requests  # the rules read it; no model call, no search
        assert reply.intent == "edit" and reply.ad["parent"] == first["path"]
        assert chat.say("undo").ad["path"] == first["path"]
        chat.say("what do you think?")  # the model now reads what happened
        said = json.dumps(llm.requests[0]["messages"])
        assert "Home at last" in said and "version 2" in said
