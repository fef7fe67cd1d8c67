"""The chat agent as a state machine, its intents, the planners, and the MLflow ResponsesAgent.

Most tests drive the agent with a fake tool over a temporary volume: the policy is what is
under test, and the fake records every call. The last tests run the real tool (the image-gen
service over the session's indexed pet photos) behind the ResponsesAgent, with traces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from adrag_app.agent import intents
from adrag_app.agent.agent import (
    AWAITING_SEGMENT,
    DONE,
    GENERATING,
    PROPOSED,
    SHOWING,
    Agent,
    AgentState,
)
from adrag_app.generators import GenerationFailed
from adrag_app.planner.planner import (
    CAT_BREEDS,
    DOG_BREEDS,
    SEGMENTS,
    BuiltinPlanner,
    LlmPlanner,
    Proposal,
    infer_filters,
    make_planner,
    match_segment,
    normalise,
    parse_llm_answer,
)
from adrag_app.service.ad_service import AdServiceError
from adrag_app.service.tool import TOOL_NAME, TOOL_SCHEMA, check_arguments
from adrag_assets.index.search import IndexNotReady
from adrag_assets.settings import load_settings
from tests.support.app_home import forget_mlflow
from tests.support.data import PETS, REPO
from tests.support.fake_tool import FakeTool
from tests.support.fake_tool import png as _png

SEGMENT = "young urban professionals"


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The state machine tests need no MLflow store; the traced tests turn it back on.
    monkeypatch.setenv("ADRAG_TRACING", "off")
    for key in ("ADRAG_LLM_BASE_URL", "ADRAG_LLM_MODEL", "ADRAG_LLM_API_KEY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def tool(tmp_path: Path) -> FakeTool:
    return FakeTool(tmp_path / "volume")


@pytest.fixture
def agent(tool: FakeTool) -> Agent:
    return Agent(tool, BuiltinPlanner(), user="tester")


class Chat:
    """Drives the agent turn by turn; each state goes through JSON, as in the app."""

    def __init__(self, agent: Agent, state: AgentState | None = None) -> None:
        self.agent = agent
        self.state = state or AgentState()
        self.replies = []

    def say(self, message: str):
        before = self.state.to_dict()
        state, reply = self.agent.handle(self.state, message)
        assert self.state.to_dict() == before, "handle() must not mutate the state it is given"
        self.state = AgentState.from_dict(json.loads(json.dumps(state.to_dict())))
        self.replies.append(reply)
        assert reply.phase == self.state.phase != GENERATING
        return reply


# -- the flow --------------------------------------------------------------------------------


def test_segment_proposal_search_reject_confirm_generate(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    reply = chat.say(SEGMENT)
    assert reply.phase == PROPOSED and not tool.calls
    proposal = reply.proposal
    assert proposal["description"] and proposal["reason"]
    assert proposal["description"] in reply.text and SEGMENT in reply.text

    reply = chat.say("yes")
    assert tool.calls[-1][0] == {"description": proposal["description"], "generate": False}
    assert tool.calls[-1][1].filters == proposal["filters"]
    assert reply.phase == SHOWING and reply.candidate["rank"] == 0 and reply.candidate["of"] == 3
    assert "Photo **1 of 3**" in reply.text and reply.candidate["number"] == 1

    reply = chat.say("Not quite")
    assert reply.candidate["rank"] == 1 and len(tool.calls) == 1  # no new search

    reply = chat.say("yes, use this one")
    assert tool.generations() == [
        {"description": proposal["description"], "seed_index": 1, "generate": True}
    ]
    context = tool.calls[-1][1]
    assert context.segment == SEGMENT and context.user == "tester"
    assert reply.phase == DONE and (tool.volume / reply.ad["path"]).is_file()
    assert reply.ad["seed"]["path"] == chat.replies[2].candidate["path"]
    assert reply.ad["path"] not in reply.text  # paths are for the engineering details
    assert [c.name for c in reply.tool_calls] == [TOOL_NAME]


def test_three_rejections_bring_a_new_proposal_and_a_new_search(
    agent: Agent, tool: FakeTool
) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    first = chat.say("yes").proposal["description"]
    assert [chat.say(no).candidate["rank"] for no in ("no", "next")] == [1, 2]
    assert len(tool.searches()) == 1
    reply = chat.say("not quite")
    second = reply.proposal["description"]
    assert second != first
    assert tool.searches() == [first, second]
    assert reply.phase == SHOWING and reply.candidate["rank"] == 0
    assert reply.candidate["path"] in tool.photos(second)
    assert "last of the top 3" in reply.text and second in reply.text
    # And again: three more rejections, a third idea, never a repeat.
    for _ in range(3):
        reply = chat.say("nope")
    assert len(set(tool.searches())) == 3 == len(chat.state.proposed)


def test_rejected_photos_are_excluded_from_later_searches(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    chat.say("yes")
    first = [c["image_id"] for c in chat.state.candidates]
    assert tool.calls[-1][1].exclude == ()
    for _ in range(3):
        chat.say("no")
    # The fresh search carries the three rejections in the bound context, not the arguments.
    arguments, context = tool.calls[-1]
    assert set(context.exclude) == set(first) and "exclude" not in arguments
    assert not {c["image_id"] for c in chat.state.candidates} & set(first)
    # A typed description is searched without them too.
    typed = chat.replies[1].proposal["description"]
    chat.say(typed)
    assert set(tool.calls[-1][1].exclude) == set(first)
    assert not {c["image_id"] for c in chat.state.candidates} & set(first)


def test_generation_repeats_the_search_with_its_exclusions(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    chat.say("yes")
    for _ in range(3):
        chat.say("no")
    searched_with = tool.calls[-1][1].exclude
    chat.say("no")  # photo 1 of the new top-3 rejected too
    shown = chat.say("next").candidate
    assert len(chat.state.rejected) == 5
    reply = chat.say("yes")
    # Not the 5 rejections of now: the top-3 searched again must be the one on screen.
    assert tool.calls[-1][1].exclude == searched_with
    assert reply.ad["seed"]["image_id"] == shown["image_id"]


def test_back_takes_a_photo_out_of_the_rejected(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    best = chat.say("yes").candidate
    chat.say("no")
    assert chat.state.rejected == [best["image_id"]]
    assert chat.say("back").candidate["image_id"] == best["image_id"]
    assert chat.state.rejected == []
    chat.say("start over")
    assert chat.state.rejected == [] and chat.state.excluded == []


def test_no_on_a_proposal_gives_another_idea_without_searching(agent: Agent, tool: FakeTool):
    chat = Chat(agent)
    seen = [chat.say(SEGMENT).proposal["description"]]
    for _ in range(4):
        reply = chat.say("no")
        assert reply.phase == PROPOSED
        seen.append(reply.proposal["description"])
    assert len(set(seen)) == 5 and not tool.calls


def test_back_goes_to_the_previous_candidate(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    chat.say("yes")
    assert chat.say("back").candidate["rank"] == 0
    assert "already the best" in chat.replies[-1].text
    chat.say("next")
    chat.say("next")
    assert chat.say("previous").candidate["rank"] == 1
    chat.say("yes")
    # After the ad: "back" returns to the photo it was made from, ready to regenerate.
    reply = chat.say("go back")
    assert reply.phase == SHOWING and reply.candidate["rank"] == 1
    assert len(tool.searches()) == 1


def test_after_the_ad_not_quite_tries_the_next_photo(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    chat.say("yes")
    chat.say("yes")
    assert chat.state.phase == DONE
    assert "ready" in chat.say("great").text  # yes again: no second generation
    assert len(tool.generations()) == 1
    reply = chat.say("not quite")
    assert reply.phase == SHOWING and reply.candidate["rank"] == 1
    assert chat.say("yes").phase == DONE
    assert [g["seed_index"] for g in tool.generations()] == [0, 1]


@pytest.mark.parametrize("phase_steps", [[], [SEGMENT], [SEGMENT, "yes"], [SEGMENT, "yes", "yes"]])
def test_a_typed_description_is_searched_at_any_point(
    agent: Agent, tool: FakeTool, phase_steps: list[str]
) -> None:
    chat = Chat(agent)
    for step in phase_steps:
        chat.say(step)
    reply = chat.say("show me a Bengal cat on a sofa")
    assert tool.searches()[-1] == "a Bengal cat on a sofa"
    assert tool.calls[-1][1].filters == {"species": "cat"}
    assert reply.phase == SHOWING and reply.candidate["rank"] == 0
    assert reply.proposal["source"] == "marketer"
    # Free text naming a pet is a description too, and "yes" then generates from it.
    reply = chat.say("a samoyed playing in the snow")
    assert tool.searches()[-1] == "a samoyed playing in the snow"
    chat.say("yes")
    assert tool.generations()[-1]["description"] == "a samoyed playing in the snow"
    assert chat.state.segment == (SEGMENT if phase_steps else "")


def test_a_typed_segment_starts_over_on_it(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    chat.say("yes")
    reply = chat.say("retirees")
    assert reply.phase == PROPOSED and chat.state.segment == "retirees"
    assert chat.state.candidates == [] and chat.state.proposed == [reply.proposal["description"]]
    reply = chat.say("segment: families with kids")
    assert chat.state.segment == "families with kids" and reply.phase == PROPOSED
    assert "beagle" in reply.proposal["description"].lower()


@pytest.mark.parametrize("words", ["start over", "Restart!", "reset", "new segment"])
def test_restart_from_any_phase_keeps_only_the_brand(
    agent: Agent, tool: FakeTool, words: str
) -> None:
    for steps in ([], [SEGMENT], [SEGMENT, "yes"], [SEGMENT, "yes", "no", "yes"]):
        chat = Chat(agent, AgentState(brand="brand/bottle.png"))
        for step in steps:
            chat.say(step)
        reply = chat.say(words)
        assert reply.phase == AWAITING_SEGMENT and "audience segment" in reply.text
        # And the conversation id: starting over is the same conversation, in traces too.
        conversation = chat.state.conversation_id
        assert conversation.startswith("conv-")
        assert chat.state == AgentState(brand="brand/bottle.png", conversation_id=conversation)


def test_generation_failure_is_said_plainly_and_the_candidate_stays(
    agent: Agent, tool: FakeTool
) -> None:
    chat = Chat(agent, AgentState(brand="brand/x.png"))
    chat.say(SEGMENT)
    chat.say("yes")
    tool.fail = GenerationFailed("The image service is overloaded; try again in a minute.")
    reply = chat.say("yes")
    assert reply.phase == SHOWING and reply.error == "generation_failed"
    assert "overloaded" in reply.text and "Nothing was saved" in reply.text
    assert reply.candidate["rank"] == 0 and reply.ad is None and chat.state.ad is None
    assert reply.tool_calls[0].error.startswith("GenerationFailed")
    assert tool.calls[-1][1].brand == "brand/x.png"
    tool.fail = AdServiceError("no brand image: put the product image(s) under brand/")
    reply = chat.say("yes")
    assert "no brand image" in reply.text.lower() and reply.phase == SHOWING
    # The provider recovers: the same candidate now makes the ad.
    reply = chat.say("yes")
    assert reply.phase == DONE and [g["seed_index"] for g in tool.generations()] == [0, 0, 0]


def test_an_empty_index_is_explained(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    chat.say(SEGMENT)
    tool.search_error = IndexNotReady("no photos are indexed yet")
    reply = chat.say("yes")
    assert reply.error == "no_index" and reply.phase == PROPOSED
    assert "adrag ingest" in reply.text
    tool.search_error = None
    assert chat.say("yes").phase == SHOWING


def test_tool_paths_that_escape_the_volume_are_refused(
    agent: Agent, tool: FakeTool, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.png"
    _png(outside)
    (tool.volume / "raw").mkdir(parents=True)
    os.symlink(outside, tool.volume / "raw" / "link.png")
    good = tool.photos("a pug")[0]
    _png(tool.volume / good)
    tool.paths = ["../secret.png", "raw/link.png", good]
    chat = Chat(agent)
    reply = chat.say("show me a pug")
    assert reply.error == "refused_path" and reply.candidate["path"] == good
    assert [c["path"] for c in chat.state.candidates] == [good]
    assert any("outside the volume" in n for n in reply.notes)
    # Every result refused: nothing is shown at all.
    tool.paths = [str(outside), "raw/../../secret.png", "/etc/hostname"]
    reply = chat.say("show me a beagle")
    assert reply.candidate is None and chat.state.candidates == [] and reply.phase == PROPOSED
    # An ad path outside the volume is refused too, and not shown.
    tool.paths = None
    chat.say("show me a pug")
    for bad in ("../secret.png", str(outside), "raw/link.png"):
        tool.ad_path = bad
        reply = chat.say("yes")
        assert reply.ad is None and reply.phase == SHOWING and reply.error == "generation_failed"
        assert "refused" in reply.text


def test_questions_are_answered_without_changing_anything(agent: Agent, tool: FakeTool):
    chat = Chat(agent)
    assert "segment" in chat.say("what can you do?").text
    chat.say(SEGMENT)
    before = chat.state
    reply = chat.say("Why this one?")
    assert chat.state == before and before.proposal["reason"] in reply.text
    chat.say("yes")
    before = chat.state
    assert "score" in chat.say("what is the score?").text and chat.state == before
    assert not tool.generations()


def test_answers_out_of_turn_ask_for_what_is_missing(agent: Agent, tool: FakeTool) -> None:
    chat = Chat(agent)
    for word in ("yes", "no", "back", ""):
        reply = chat.say(word)
        assert reply.phase == AWAITING_SEGMENT and "segment" in reply.text.lower()
    chat.say(SEGMENT)
    assert "no earlier photo" in chat.say("back").text
    assert not tool.calls


def test_state_round_trips_and_rejects_nonsense() -> None:
    state = AgentState(phase=SHOWING, segment="x", candidates=[{"rank": 0, "path": "p"}])
    assert AgentState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert AgentState.from_dict(None) == AgentState()
    # A turn that died mid-generation resumes at the photo.
    assert AgentState.from_dict({**state.to_dict(), "phase": GENERATING}).phase == SHOWING
    with pytest.raises(ValueError):
        AgentState.from_dict({"phase": "dancing"})
    with pytest.raises(ValueError):
        AgentState.from_dict({**state.to_dict(), "shown": 5})


# -- intents ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind", "text"),
    [
        ("yes", intents.YES, ""),
        ("Yes, please!", intents.YES, ""),
        ("ok", intents.YES, ""),
        ("👍", intents.YES, ""),
        ("looks good", intents.YES, ""),
        ("generate it", intents.YES, ""),
        ("Not quite", intents.NO, ""),
        ("nope.", intents.NO, ""),
        ("next one please", intents.NO, ""),
        ("show me another", intents.NO, ""),
        ("back", intents.BACK, ""),
        ("Previous", intents.BACK, ""),
        ("start over", intents.RESTART, ""),
        ("Start again!", intents.RESTART, ""),
        ("segment: retirees", intents.SEGMENT, "retirees"),
        ("new audience: students", intents.SEGMENT, "students"),
        ("show me a beagle on the beach", intents.DESCRIPTION, "a beagle on the beach"),
        ("how about a Maine Coon?", intents.DESCRIPTION, "a Maine Coon"),
        ("no, a samoyed in the snow", intents.DESCRIPTION, "a samoyed in the snow"),
        ("Why this one?", intents.QUESTION, "Why this one?"),
        ("young urban professionals", intents.SEGMENT, "young urban professionals"),
        ("   ", intents.EMPTY, ""),
    ],
)
def test_intents(message: str, kind: str, text: str) -> None:
    phase = AWAITING_SEGMENT if kind == intents.SEGMENT else SHOWING
    parsed = intents.parse(message, phase)
    assert (parsed.kind, parsed.text) == (kind, text)


# -- planners --------------------------------------------------------------------------------


def _library_breeds() -> set[str]:
    lines = (PETS / "labels.csv").read_text().splitlines()[1:]
    return {line.split(",")[1].strip() for line in lines if line}


def test_the_curated_table_names_breeds_in_the_photo_library() -> None:
    library = _library_breeds()
    assert set(DOG_BREEDS) | set(CAT_BREEDS) <= library
    assert 15 <= len(SEGMENTS) <= 25
    for segment in SEGMENTS:
        for idea in segment.ideas:
            norm = f" {normalise(idea.description)} "
            assert any(f" {b} " in norm for b in library), idea.description
            assert idea.reason and "\n" not in idea.reason
            assert infer_filters(idea.description) == {"species": idea.species}


def test_proposals_only_name_breeds_the_library_has() -> None:
    vocabulary = {"breed": {"beagle": 40, "bengal": 12}, "species": {"dog": 40, "cat": 12}}
    planner = BuiltinPlanner(vocabulary=vocabulary)
    others = (set(DOG_BREEDS) | set(CAT_BREEDS)) - {"beagle", "bengal"}
    for segment in ("young urban professionals", "retirees", "crypto investors", "hikers"):
        seen: list[str] = []
        for _ in range(8):
            proposal = planner.propose(segment, tuple(seen))
            seen.append(proposal.description)
            norm = f" {normalise(proposal.description)} "
            assert " beagle " in norm or " bengal " in norm, proposal.description
            assert not [b for b in others if f" {b} " in norm], proposal.description
            expected = "dog" if " beagle " in norm else "cat"
            assert proposal.filters == {"species": expected}
        assert len(set(seen)) == 8  # still a new idea each time
    # A library without species labels: no species filter, which would match nothing.
    bare = BuiltinPlanner(vocabulary={"breed": {"beagle": 3}})
    assert bare.propose("retirees").filters == {}

    # Labels unavailable (no index yet): the curated breeds, as before.
    def broken() -> dict:
        raise IndexNotReady("no index")

    assert BuiltinPlanner(vocabulary=broken).propose(SEGMENT) == BuiltinPlanner().propose(SEGMENT)


def test_the_llm_planner_is_told_the_library_breeds() -> None:
    asked: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content)["messages"][0]["content"])
        answer = {"description": "a beagle on a lawn", "reason": "friendly", "species": "dog"}
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps(answer)}}]})

    vocabulary = {"breed": {"beagle": 4, "bengal": 2}, "species": {"dog": 4, "cat": 2}}
    planner = LlmPlanner(
        "http://llm.test/v1",
        "m",
        fallback=BuiltinPlanner(vocabulary=vocabulary),
        transport=httpx.MockTransport(respond),
    )
    planner.propose(SEGMENT)
    assert "dogs: beagle\n" in asked[0] and "cats: bengal\n" in asked[0]


def test_segments_come_from_a_data_file_the_volume_can_override(tmp_path: Path) -> None:
    from adrag_app.planner.segments import default_catalog, load_catalog

    assert load_catalog(tmp_path) is default_catalog()
    path = tmp_path / "campaigns" / "segments.yaml"
    path.parent.mkdir()
    path.write_text(
        "segments:\n"
        "  - name: cyclists\n"
        "    keywords: [bike, cycling]\n"
        "    ideas:\n"
        "      - {description: 'a {breed} in a bike basket', breed: pug, species: dog,\n"
        "         reason: small enough to ride along}\n"
        "fallback_ideas:\n"
        "  - {description: 'a {breed} at home', breed: persian, species: cat, reason: calm}\n"
    )
    catalog = load_catalog(tmp_path)
    assert [s.name for s in catalog.segments] == ["cyclists"]
    proposal = BuiltinPlanner(catalog).propose("people who love cycling")
    assert proposal.description == "a pug in a bike basket" and proposal.source == "builtin"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("segments: [", "not valid YAML"),
        ("segments: {}", "a 'segments' list"),
        (
            "segments:\n  - name: cyclists\n    ideas:\n"
            "      - {description: a pug in a basket, breed: pug, species: dog, reason: r}\n",
            r"segment 1 \('cyclists'\), idea 1: the description must contain \{breed\}",
        ),
        (
            "segments:\n  - name: cyclists\n    ideas:\n"
            "      - {description: 'a {breed}', breed: pug, species: parrot, reason: r}\n",
            r"segment 1 \('cyclists'\), idea 1: species must be one of dog, cat",
        ),
        (
            "segments:\n  - name: cyclists\n    ideas: []\n",
            r"segment 1 \('cyclists'\): 'ideas' must be a non-empty list",
        ),
    ],
)
def test_a_bad_segments_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    from adrag_app.planner.segments import SegmentsFileError, load_catalog

    path = tmp_path / "campaigns" / "segments.yaml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(SegmentsFileError, match=message) as caught:
        load_catalog(tmp_path)
    assert str(caught.value).startswith(str(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("young urban professionals", "young urban professionals"),
        ("Young Urban Proffesionals!", "young urban professionals"),
        ("urban millennials", "young urban professionals"),
        ("families with kids", "families with young children"),
        ("retired people", "retirees"),
        ("seniors 65+", "retirees"),
        ("college students", "students"),
        ("hikers", "outdoor enthusiasts"),
        ("people who work from home", "remote workers"),
        ("skiers", "winter sports fans"),
        ("crypto investors", None),
        ("nurses", None),
    ],
)
def test_segments_are_matched_robustly(text: str, expected: str | None) -> None:
    segment, _ = match_segment(text)
    assert (segment.name if segment else None) == expected


def test_builtin_planner_varies_and_falls_back() -> None:
    planner = BuiltinPlanner()
    first = planner.propose("young urban professionals")
    assert first == planner.propose("young urban professionals")  # deterministic
    assert first.filters == {"species": "dog"} and first.source == "builtin"
    seen = [first.description]
    for _ in range(6):
        seen.append(planner.propose("young urban professionals", seen).description)
    assert len(set(seen)) == 7
    unknown = planner.propose("crypto investors")
    assert unknown.source == "fallback" and "no curated idea" in unknown.reason
    assert planner.propose("").description


def _chat_answer(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def test_llm_planner_asks_an_openai_compatible_endpoint() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        content = (
            '```json\n{"description": "a Havanese on a yoga mat", '
            '"reason": "calm and small", "species": "dog"}\n```'
        )
        return httpx.Response(200, json=_chat_answer(content))

    planner = LlmPlanner(
        "http://llm.invalid/v1", "tiny", "sk-test-key", transport=httpx.MockTransport(answer)
    )
    proposal = planner.propose("yoga teachers", exclude=["a pug on a mat"])
    assert proposal == Proposal(
        "a Havanese on a yoga mat", "calm and small", {"species": "dog"}, "llm"
    )
    request = seen[0]
    assert str(request.url) == "http://llm.invalid/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-key"
    body = json.loads(request.content)
    assert body["model"] == "tiny" and "yoga teachers" in body["messages"][1]["content"]
    assert "a pug on a mat" in body["messages"][1]["content"]
    assert "sk-test-key" not in repr(planner)


@pytest.mark.parametrize(
    "respond",
    [
        lambda r: httpx.Response(500, text="boom"),
        lambda r: httpx.Response(200, json=_chat_answer("I think a dog would be nice.")),
        lambda r: httpx.Response(200, json={"unexpected": True}),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
    ],
    ids=["http-500", "no-json", "bad-shape", "unreachable"],
)
def test_llm_planner_errors_fall_back_visibly(respond) -> None:
    planner = LlmPlanner("http://llm.invalid", "tiny", transport=httpx.MockTransport(respond))
    proposal = planner.propose(SEGMENT)
    assert proposal.description == BuiltinPlanner().propose(SEGMENT).description
    assert "unavailable" in proposal.note and "built-in" in proposal.note


def test_llm_fallback_note_reaches_the_marketer(tool: FakeTool) -> None:
    planner = LlmPlanner(
        "http://llm.invalid", "m", transport=httpx.MockTransport(lambda r: httpx.Response(503))
    )
    reply = Chat(Agent(tool, planner)).say(SEGMENT)
    assert reply.phase == PROPOSED and any("HTTP 503" in n for n in reply.notes)


def test_make_planner_follows_the_llm_settings() -> None:
    assert isinstance(make_planner(load_settings({}).llm), BuiltinPlanner)
    llm = load_settings(
        {"ADRAG_LLM_BASE_URL": "http://h:8000", "ADRAG_LLM_MODEL": "m", "ADRAG_LLM_API_KEY": "k"}
    ).llm
    planner = make_planner(llm)
    assert isinstance(planner, LlmPlanner) and planner.url == "http://h:8000/v1/chat/completions"
    with pytest.raises(ValueError):
        parse_llm_answer('{"description": ""}')


# -- the tool schema -------------------------------------------------------------------------


def test_the_tool_schema_stays_minimal() -> None:
    assert set(TOOL_SCHEMA["parameters"]["properties"]) == {"description", "seed_index", "generate"}
    assert check_arguments({"description": "a pug"}) == ("a pug", 0, False)
    for bad in (
        {"description": ""},
        {"description": "a pug", "seed_index": 3},
        {"description": "a pug", "seed_index": True},
        {"description": "a pug", "generate": "yes"},
        {"description": "a pug", "filters": {"species": "dog"}},
    ):
        with pytest.raises(ValueError):
            check_arguments(bad)


# -- the MLflow ResponsesAgent ---------------------------------------------------------------


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Tracing on, into an MLflow store of this test's own."""
    import mlflow

    monkeypatch.setenv("ADRAG_HOME", str(tmp_path / "home"))
    for key in ("ADRAG_TRACING", "ADRAG_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    yield mlflow
    forget_mlflow()


def _user(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


def _spans(mlflow, trace_id: str) -> dict[str, Any]:
    trace = mlflow.get_trace(trace_id)
    return {s.name: s for s in trace.data.spans}


def test_responses_agent_carries_state_and_traces_each_turn(tool: FakeTool, traced) -> None:
    from adrag_app.agent.responses_agent import AdragResponsesAgent
    from adrag_assets import tracing

    mlflow = traced
    model = AdragResponsesAgent(Agent(tool, BuiltinPlanner()))
    first = model.predict({"input": _user(SEGMENT)})
    assert first.custom_outputs["phase"] == PROPOSED and first.output[-1].type == "message"
    second = model.predict(
        {
            "input": _user(SEGMENT, "yes"),
            "custom_inputs": {"state": first.custom_outputs["state"], "brand": "brand/b.png"},
        }
    )
    call, output, message = second.output
    assert (call.type, call.name, output.type) == (
        "function_call",
        TOOL_NAME,
        "function_call_output",
    )
    assert json.loads(call.arguments) == {
        "description": first.custom_outputs["state"]["proposal"]["description"],
        "generate": False,
    }
    paths = [c["path"] for c in json.loads(output.output)["candidates"]]
    assert paths == tool.photos(json.loads(call.arguments)["description"])  # paths, no bytes
    assert second.custom_outputs["candidate"]["rank"] == 0
    third = model.predict(
        {"input": _user("yes"), "custom_inputs": {"state": second.custom_outputs["state"]}}
    )
    assert third.custom_outputs["phase"] == DONE and third.custom_outputs["ad"]["path"]
    assert tool.calls[-1][1].brand == "brand/b.png"  # the brand travelled in the state

    tracing.flush()
    traces = mlflow.search_traces(return_type="list", order_by=["timestamp_ms ASC"])
    assert len(traces) == 3
    spans = _spans(mlflow, traces[1].info.trace_id)
    root = spans["predict"]
    assert root.parent_id is None and root.span_type == "AGENT"
    assert spans["agent_turn"].parent_id == root.span_id
    assert spans["agent_turn"].span_type == "AGENT"
    assert spans[TOOL_NAME].parent_id == spans["agent_turn"].span_id
    assert spans[TOOL_NAME].span_type == "TOOL"
    # The conversation id travelled in the state: the three turns are one MLflow session.
    session = third.custom_outputs["conversation_id"]
    assert session == first.custom_outputs["state"]["conversation_id"]
    assert {t.info.trace_metadata.get("mlflow.trace.session") for t in traces} == {session}


def test_responses_agent_takes_the_clients_conversation_and_user(tool: FakeTool, traced) -> None:
    from adrag_app.agent.responses_agent import AdragResponsesAgent
    from adrag_assets import tracing

    mlflow = traced
    model = AdragResponsesAgent(Agent(tool, BuiltinPlanner()))
    context = {"conversation_id": "client-42", "user_id": "ana"}
    model.predict({"input": _user(SEGMENT), "context": context})
    # Without adrag's state, the history is replayed: still the client's conversation.
    out = model.predict({"input": _user(SEGMENT, "yes"), "context": context})
    assert out.custom_outputs["conversation_id"] == "client-42"
    assert tool.calls[-1][1].user == "ana"
    tracing.flush()
    found = mlflow.search_traces(
        filter_string="metadata.`mlflow.trace.session` = 'client-42'", return_type="list"
    )
    assert len(found) == 2
    assert {t.info.trace_metadata["mlflow.trace.user"] for t in found} == {"ana"}


def test_responses_agent_without_state_replays_the_history(tool: FakeTool) -> None:
    from adrag_app.agent.responses_agent import AdragResponsesAgent

    model = AdragResponsesAgent(Agent(tool, BuiltinPlanner()))
    history = [
        *_user(SEGMENT),
        {"role": "assistant", "content": "How about ...?"},
        *_user("yes", "yes", "not quite"),
    ]
    response = model.predict({"input": history})
    assert response.custom_outputs["replayed_turns"] == 3
    # Replay searched again but did not generate again: the conversation resumes at the
    # photo, and "not quite" moves on to the next one.
    assert not tool.generations() and len(tool.searches()) == 1
    assert response.custom_outputs["phase"] == SHOWING
    assert response.custom_outputs["candidate"]["rank"] == 1


def test_the_agent_saves_and_loads_as_an_mlflow_model(tmp_path: Path, monkeypatch) -> None:
    """Models-from-code: what `mlflow.pyfunc.log_model` stores is loadable and answers."""
    import mlflow

    monkeypatch.setenv("ADRAG_HOME", str(tmp_path / "home"))
    path = tmp_path / "model"
    code = REPO / "adrag_app" / "agent" / "mlflow_model.py"
    mlflow.pyfunc.save_model(str(path), python_model=str(code), pip_requirements=["adrag"])
    model = mlflow.pyfunc.load_model(str(path))
    out = model.predict({"input": [{"role": "user", "content": "retirees"}]})
    assert out["custom_outputs"]["phase"] == PROPOSED
    assert "How about" in out["output"][-1]["content"][0]["text"]
