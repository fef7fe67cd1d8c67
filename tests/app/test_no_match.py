""" "No good match": the agent and `adrag search` on a description the pet library cannot
answer (real ingest, a Milvus Lite server, the offline encoder: only BM25 can vouch)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from adrag_app.agent.agent import SHOWING, Agent, AgentState
from adrag_app.planner.planner import BuiltinPlanner
from adrag_app.service.tool import ServiceTool
from tests.support.app_home import IndexedHome, indexed_home, using_env
from tests.support.cli import run_adrag

SEGMENT = "families with young children"
NOTHING = "a giraffe on a skateboard"
# What the agent reads as a description (it names a pet) yet no label or caption holds.
UNLABELLED = "a puppy on a skateboard"


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> IndexedHome:
    return indexed_home(request, tmp_path_factory)


@pytest.fixture
def agent(home: IndexedHome) -> Iterator[Agent]:
    with using_env({**home.env, "ADRAG_TRACING": "off"}):
        yield Agent(ServiceTool(home.settings()), BuiltinPlanner(), user="tester")


def test_the_agent_says_there_is_no_good_match_and_asks_again(agent: Agent) -> None:
    state, _ = agent.handle(AgentState(), SEGMENT)
    state, reply = agent.handle(state, f"show me {UNLABELLED}")
    assert reply.candidate is None and state.candidates == []
    assert f"no good match for **{UNLABELLED}**" in reply.text
    assert "describe the photo you want another way" in reply.text
    assert not reply.error  # an answer, not a failure
    # Another description is searched as usual.
    state, reply = agent.handle(state, "show me a beagle")
    assert reply.phase == SHOWING and reply.candidate["labels"]["breed"] == "beagle"


def test_the_cli_prints_an_empty_list_and_a_note(home: IndexedHome) -> None:
    out = run_adrag("search", NOTHING, "--json", env=home.env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    assert f"no good match for '{NOTHING}'" in out.stderr
    found = run_adrag("search", "beagle", "--json", env=home.env)
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and all("beagle" in h["path"].lower() for h in hits)
    assert "no good match" not in found.stderr
    # A search by photo is not subject to the floor.
    like = run_adrag("search", "--like", hits[0]["image_id"], "--json", env=home.env)
    assert like.returncode == 0 and len(json.loads(like.stdout)) == 3
