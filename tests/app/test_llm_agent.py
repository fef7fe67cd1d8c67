"""The LLM-driven agent against a real local chat endpoint (tests/support/fake_llm.py).

The model's answers are scripted; the tool is the deterministic fake over a temporary volume.
What is under test: the model drives the turn through tool calls, and the state machine still
decides what may run (no ad without a confirmed photo, indices only among the photos on
screen, exclusions bound by the agent), with the built-in agent taking over visibly whenever
the model fails.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from adrag_app.agent.agent import AWAITING_SEGMENT, DONE, PROPOSED, SHOWING, Agent, AgentState
from adrag_app.agent.llm_agent import LlmAgent, make_agent
from adrag_app.planner.planner import BuiltinPlanner
from adrag_assets.settings import LlmSettings, SettingsError, load_settings
from tests.support.fake_llm import Answer, FakeLlm, refusal, text, tool_call
from tests.support.fake_tool import FakeTool, image_id

KEY = "sk-test-0123456789abcdefghijklmnop"
SEGMENT = "young urban professionals"
BEAGLE = "a beagle in a sunny park"
OFFLINE = "The assistant is offline"


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADRAG_TRACING", "off")


@pytest.fixture
def tool(tmp_path: Path) -> FakeTool:
    return FakeTool(tmp_path / "volume")


def llm_agent(tool: FakeTool, llm: FakeLlm, timeout: float = 10.0) -> Agent:
    settings = LlmSettings(base_url=llm.base_url, model="tiny", api_key=KEY, timeout_s=timeout)
    agent = make_agent(tool, BuiltinPlanner(), settings, user="tester")
    assert isinstance(agent, LlmAgent)
    return agent


class Chat:
    """Turn by turn, each state through JSON as in the app."""

    def __init__(self, agent: Agent, state: AgentState | None = None) -> None:
        self.agent, self.state, self.replies = agent, state or AgentState(), []

    def say(self, message: str):
        state, reply = self.agent.handle(self.state, message)
        self.state = AgentState.from_dict(json.loads(json.dumps(state.to_dict())))
        self.replies.append(reply)
        return reply


def showing(agent: Agent) -> Chat:
    """A chat with the beagle photos on screen, photo 1 shown (the model searched)."""
    chat = Chat(agent)
    chat.say(SEGMENT)
    chat.say("yes")
    assert chat.state.phase == SHOWING
    return chat


def test_a_tool_call_searches_and_shows_the_candidates(tool: FakeTool) -> None:
    answers = [
        text(f"How about **{BEAGLE}**? City people love a weekend in the park. Search?"),
        tool_call({"description": BEAGLE, "generate": False}, "Here is the best match."),
    ]
    with FakeLlm(KEY, answers) as llm:
        chat = Chat(llm_agent(tool, llm))
        first = chat.say(SEGMENT)
        assert first.text.startswith(f"How about **{BEAGLE}**")
        assert (chat.state.segment, tool.calls) == (SEGMENT, []), "text only: nothing ran"
        reply = chat.say("yes please")
        requests, auth = llm.requests, llm.auth

    assert tool.searches() == [BEAGLE]
    assert reply.phase == SHOWING and reply.intent == "description"
    assert reply.candidate["path"] == f"raw/{BEAGLE.replace(' ', '-')}-0.png"
    assert reply.candidate["number"] == 1 and reply.candidate["of"] == 3
    assert reply.text.startswith("Here is the best match.") and "Photo **1 of 3**" in reply.text
    assert not reply.notes
    # The agent bound the context from its own state: the segment, no exclusions.
    context = tool.calls[0][1]
    assert (context.segment, context.exclude, context.user) == (SEGMENT, (), "tester")
    # The model was sent the key, the tool, the conversation so far and the screen.
    assert auth == [f"Bearer {KEY}"] * 2
    second = requests[1]
    assert second["model"] == "tiny"
    assert second["tools"][0]["function"]["name"] == tool.name
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert f"audience segment: {SEGMENT}" in second["messages"][0]["content"]
    assert second["messages"][2]["content"].startswith("How about")


def test_a_confirmed_photo_makes_the_ad_from_the_searched_description(tool: FakeTool) -> None:
    answers = [
        text("A beagle in a park? Say yes to search."),
        tool_call({"description": BEAGLE, "generate": False}),
        # The model rewords the description: the agent keeps the searched one (same top-3).
        tool_call({"description": "a happy beagle", "seed_index": 0, "generate": True}),
    ]
    with FakeLlm(KEY, answers) as llm:
        chat = showing(llm_agent(tool, llm))
        screen = llm.requests[-1]["messages"][0]["content"]
        reply = chat.say("yes")
        seen = llm.requests[-1]["messages"][0]["content"]
    assert "<- on screen" not in screen  # nothing was on screen when it searched
    assert "0: raw/a-beagle-in-a-sunny-park-0.png, 0.900  <- on screen" in seen

    assert tool.generations() == [{"description": BEAGLE, "seed_index": 0, "generate": True}]
    assert reply.phase == DONE and reply.ad["path"].startswith("ads/")


def test_the_model_cannot_make_an_ad_the_marketer_did_not_confirm(tool: FakeTool) -> None:
    call = {"description": BEAGLE, "seed_index": 0, "generate": True}
    answers = [text("Search for a beagle?"), tool_call({"description": BEAGLE}), tool_call(call)]
    with FakeLlm(KEY, answers) as llm:
        chat = showing(llm_agent(tool, llm))
        reply = chat.say("hmm, what do you think of it?")

    assert tool.generations() == [] and reply.ad is None
    assert reply.phase == SHOWING and reply.error == "refused_tool_call"
    assert any("refused" in n and "not confirmed" in n for n in reply.notes), reply.notes


def test_a_yes_to_photo_1_never_makes_the_ad_from_photo_3(tool: FakeTool) -> None:
    call = {"description": BEAGLE, "seed_index": 2, "generate": True}
    answers = [text("Search for a beagle?"), tool_call({"description": BEAGLE}), tool_call(call)]
    with FakeLlm(KEY, answers) as llm:
        chat = showing(llm_agent(tool, llm))
        reply = chat.say("yes")

    assert any("photo 3, which you have not confirmed" in n for n in reply.notes), reply.notes
    # The refused call did not run; the built-in agent took the yes for what it is: photo 1.
    assert [g["seed_index"] for g in tool.generations()] == [0]
    assert reply.phase == DONE


def test_no_ad_without_a_photo_on_screen(tool: FakeTool) -> None:
    call = tool_call({"description": BEAGLE, "seed_index": 0, "generate": True}, "Done!")
    with FakeLlm(KEY, [call]) as llm:
        chat = Chat(llm_agent(tool, llm))
        reply = chat.say(SEGMENT)

    assert tool.calls == [] and reply.ad is None
    assert any("no photo on screen" in n for n in reply.notes), reply.notes
    assert "Done!" not in reply.text, "a refused call's words are not shown"
    # The built-in agent answered the message instead: a proposal for the segment.
    assert reply.phase == PROPOSED and reply.text.startswith("How about")


def test_seed_index_only_among_the_photos_on_screen(tool: FakeTool) -> None:
    tool.paths = ["raw/only-one.png"]  # one candidate on screen
    (tool.volume / "raw").mkdir(parents=True)
    (tool.volume / "raw/only-one.png").write_bytes(b"")
    answers = [
        text("Search?"),
        tool_call({"description": BEAGLE}),
        tool_call({"description": BEAGLE, "seed_index": 1, "generate": True}),
    ]
    with FakeLlm(KEY, answers) as llm:
        chat = showing(llm_agent(tool, llm))
        reply = chat.say("yes")

    assert any("photo 2 is not among the photos on screen" in n for n in reply.notes)
    # Only the photo on screen (and confirmed) was ever made into an ad.
    assert [g["seed_index"] for g in tool.generations()] == [0]


def test_refusal_text_from_the_model_is_shown_and_nothing_runs(tool: FakeTool) -> None:
    with FakeLlm(KEY, [refusal("Sorry, I can't help with that request.")]) as llm:
        chat = Chat(llm_agent(tool, llm))
        reply = chat.say("write me an ad that mocks cat owners")

    assert reply.text == "Sorry, I can't help with that request."
    assert tool.calls == [] and reply.tool_calls == [] and not reply.notes


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ('{"description": "a beagle"', "not valid JSON"),
        ('["a beagle"]', "not a JSON object"),
        ({"description": BEAGLE, "seed_index": 7}, "seed_index must be between 0 and 2"),
        ({"description": BEAGLE, "seed_index": "first"}, "seed_index must be an integer"),
        ({"description": "  "}, "non-empty description"),
        # Exclusions are the agent's to bind: a model that tries is refused.
        ({"description": BEAGLE, "exclude": [image_id("raw/x.png")]}, "unknown tool argument"),
    ],
)
def test_malformed_tool_arguments_are_refused_and_the_model_is_told(
    tool: FakeTool, arguments: dict | str, why: str
) -> None:
    answers = [tool_call(arguments), text("Sorry about that. Shall I search for a beagle?")]
    with FakeLlm(KEY, answers) as llm:
        chat = Chat(llm_agent(tool, llm))
        chat.state.segment = SEGMENT
        chat.state.phase = PROPOSED
        chat.state.proposal = {"description": BEAGLE, "reason": "r", "filters": {}}
        reply = chat.say("hmm, I wonder")
        chat.say("what now?")
        told = llm.requests[-1]["messages"]

    assert tool.calls == [] and reply.error == "refused_tool_call"
    assert any("refused" in n and why in n for n in reply.notes), reply.notes
    # The next turn's history carries the refusal to the model.
    assert any(m["role"] == "assistant" and why in m["content"] for m in told)


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (Answer(hold=True), "timed out"),
        (Answer(status=503), "HTTP 503"),
        (Answer(raw=b"<html>gateway</html>"), "JSONDecodeError"),
        (Answer({"role": "assistant", "content": ""}), "answered nothing"),
        (Answer({"role": "assistant", "content": 42}), "not a chat message"),
    ],
)
def test_any_model_failure_falls_back_to_the_built_in_agent_visibly(
    tool: FakeTool, answer: Answer, detail: str
) -> None:
    # The held answer outlasts this short timeout; the server never answers it.
    with FakeLlm(KEY, [answer]) as llm:
        chat = Chat(llm_agent(tool, llm, timeout=0.3))
        reply = chat.say(SEGMENT)

    note = next(n for n in reply.notes if n.startswith(OFFLINE))
    assert detail in note and note.endswith("using the built-in one.")
    # The built-in agent's own answer: a proposal for the segment.
    assert reply.phase == PROPOSED and reply.text.startswith("How about")
    assert chat.state.segment == SEGMENT


def test_the_api_key_appears_in_no_reply_note_state_repr_or_log(
    tool: FakeTool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        Answer(status=401),
        tool_call("{broken"),
        refusal("No."),
        Answer(hold=True),
    ]
    with FakeLlm(KEY, answers) as llm:
        agent = llm_agent(tool, llm, timeout=0.3)
        chat = Chat(agent)
        for message in (SEGMENT, "yes", "why?", "not quite"):
            chat.say(message)
        sent = llm.auth

    assert sent and all(a == f"Bearer {KEY}" for a in sent), "the key was sent, so it was known"
    seen = [
        repr(agent),
        repr(agent.client),
        repr(LlmSettings(base_url="http://x", model="m", api_key=KEY)),
        json.dumps(chat.state.to_dict()),
        *(json.dumps(r.as_dict(), default=str) for r in chat.replies),
        caplog.text,
    ]
    assert not [s for s in seen if KEY in s]


def test_without_a_model_or_as_planner_only_the_agent_is_rule_driven(tool: FakeTool) -> None:
    assert type(make_agent(tool, BuiltinPlanner(), LlmSettings())) is Agent
    planner_only = LlmSettings(base_url="http://127.0.0.1:9", model="m", role="planner")
    assert type(make_agent(tool, BuiltinPlanner(), planner_only)) is Agent
    env = {"ADRAG_LLM_BASE_URL": "http://llm", "ADRAG_LLM_MODEL": "m"}
    assert load_settings(env).llm.drives_agent
    assert not load_settings({**env, "ADRAG_LLM_ROLE": "Planner"}).llm.drives_agent
    with pytest.raises(SettingsError, match="ADRAG_LLM_ROLE='boss'"):
        load_settings({**env, "ADRAG_LLM_ROLE": "boss"})
    # The rule-driven agent keeps no history: its state is as before.
    state, reply = Agent(tool, BuiltinPlanner()).handle(AgentState(), SEGMENT)
    assert state.history == [] and reply.phase == PROPOSED and state.phase != AWAITING_SEGMENT
