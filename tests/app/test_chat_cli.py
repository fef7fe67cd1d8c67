"""``adrag chat --json`` as a real subprocess over the session's indexed pet photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.app_home import CLEARED, IndexedHome, indexed_home

ADRAG = Path(sys.executable).parent / "adrag"


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> IndexedHome:
    return indexed_home(request, tmp_path_factory)


def chat(home: IndexedHome, lines: list[str], *args: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(home.env, ADRAG_TRACING="off", PYTHONPATH=str(Path(__file__).parents[2]))
    started = time.monotonic()
    done = subprocess.run(
        [str(ADRAG), "chat", "--json", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    print(f"adrag chat: {len(lines)} lines in {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_conversation_in_the_terminal_makes_an_ad(home: IndexedHome) -> None:
    replies = chat(
        home,
        ["looks right", "hmm, not this one", "go back to the previous one", "that's the one"],
        "--segment",
        "retirees",
    )
    assert [r["intent"] for r in replies] == ["segment", "yes", "no", "back", "yes"]
    assert [r["phase"] for r in replies] == [
        "proposed",
        "showing_candidate",
        "showing_candidate",
        "showing_candidate",
        "done",
    ]
    first, second, back = (r["candidate"] for r in replies[1:4])
    assert (first["rank"], second["rank"], back["rank"]) == (1, 2, 1)
    assert back["path"] == first["path"] != second["path"]
    assert all(r["ad"] is None for r in replies[:4])
    ad = replies[-1]["ad"]["path"]
    assert ad.startswith("ads/") and (home.settings().volume / ad).is_file()
    assert "looks right" not in json.dumps(replies)  # an answer is never searched for


def test_a_typed_description_and_an_unclear_reply(home: IndexedHome) -> None:
    replies = chat(home, ["dog lovers", "a samoyed in the snow", "not sure", "start over"])
    assert [r["intent"] for r in replies] == ["segment", "description", "question", "restart"]
    found = replies[1]["candidate"]
    assert found["rank"] == 1 and "samoyed" in found["path"].lower()
    assert replies[2]["phase"] == "showing_candidate" and replies[2]["candidate"] is None
    assert replies[3]["phase"] == "awaiting_segment"
