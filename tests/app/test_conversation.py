"""Whole conversations with the real tool over the session's indexed pet photos.

The agent runs in-process with :class:`ServiceTool` (tiny CLIP, a Milvus Lite server, the
local compositor, a real Dagster instance): relevance feedback across searches, and the MLflow
session that ties a conversation's traces together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adrag_app.agent.agent import DONE, PROPOSED, SHOWING, Agent, AgentState, Reply
from adrag_app.planner.planner import BuiltinPlanner
from adrag_app.service.tool import ServiceTool
from adrag_assets import tracing
from tests.support.app_home import IndexedHome, forget_mlflow, indexed_home, using_env

SEGMENT = "families with young children"


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> IndexedHome:
    return indexed_home(request, tmp_path_factory)


class Conversation:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.state = AgentState()

    def say(self, message: str) -> Reply:
        self.state, reply = self.agent.handle(self.state, message)
        return reply

    def ids(self) -> list[str]:
        return [c["image_id"] for c in self.state.candidates]


@pytest.fixture
def untraced(home: IndexedHome) -> Iterator[Agent]:
    with using_env({**home.env, "ADRAG_TRACING": "off"}):
        yield Agent(ServiceTool(home.settings()), BuiltinPlanner(), user="tester")


def test_rejected_photos_do_not_come_back_and_back_still_works(untraced: Agent) -> None:
    chat = Conversation(untraced)
    chat.say(SEGMENT)
    first_idea = chat.say("yes").proposal["description"]
    first = chat.ids()
    assert len(first) == 3
    for _ in range(3):
        reply = chat.say("not quite")
    # A fresh proposal and a fresh search, with a full top-3 and none of the rejected.
    assert reply.phase == SHOWING and reply.proposal["description"] != first_idea
    assert len(chat.ids()) == 3 and not set(chat.ids()) & set(first)

    # The first idea typed again: lexical search alone would give the same three photos.
    chat.say(first_idea)
    again = chat.ids()
    assert len(again) == 3 and not set(again) & set(first)

    # "back" brings a rejected photo back, and the ad is made from the photo on screen.
    assert chat.say("no").candidate["image_id"] == again[1]
    assert chat.say("back").candidate["image_id"] == again[0]
    shown = chat.say("next").candidate
    assert shown["image_id"] == again[1]
    reply = chat.say("yes")
    assert reply.phase == DONE, reply.text
    assert reply.ad["seed"]["image_id"] == again[1]


def test_the_planner_names_only_breeds_in_the_index(untraced: Agent) -> None:
    tool = untraced.tool
    counts = tool.label_counts()
    assert sum(counts["species"].values()) == 296 and set(counts["species"]) == {"cat", "dog"}
    planner = BuiltinPlanner(vocabulary=tool.label_counts)
    seen: list[str] = []
    for _ in range(6):
        seen.append(planner.propose("crypto investors", tuple(seen)).description)
        assert any(breed in seen[-1].lower() for breed in counts["breed"]), seen[-1]


def test_a_conversation_is_one_mlflow_session(home: IndexedHome, tmp_path: Path) -> None:
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**home.env, "ADRAG_MLFLOW_TRACKING_URI": store, "ADRAG_APP_USER": "ana@example.com"}
    try:
        with using_env(env):
            settings = home.settings()
            agent = Agent(ServiceTool(settings), BuiltinPlanner(), user=settings.app.user)
            chat = Conversation(agent)
            phases = [chat.say(m).phase for m in (SEGMENT, "yes", "no", "that's the one")]
            assert phases == [PROPOSED, SHOWING, SHOWING, DONE]
            session = chat.state.conversation_id
            assert session

            other = Conversation(agent)
            other.say("retirees")
            assert other.state.conversation_id != session
            tracing.flush()

            found = mlflow.search_traces(
                filter_string=f"metadata.`mlflow.trace.session` = '{session}'",
                return_type="list",
            )
            assert len(found) == 4
            for trace in found:
                assert trace.info.trace_metadata["mlflow.trace.user"] == "ana@example.com"
            every = mlflow.search_traces(return_type="list")
            assert len(every) == 5  # the other conversation is its own session
    finally:
        forget_mlflow()
