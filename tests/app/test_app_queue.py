"""The app's message queue (adrag_app/ui/support.Conversation) under Streamlit's rerun model.

Two threads stand for two script runs of one session: with ``runner.fastReruns`` a message
sent during a turn starts a new run at once while the old run's thread finishes its turn. The
browser test (tests/e2e/test_app_browser.py) does the same through a real page.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from adrag_app.ui import support

MAX = 2000
WAIT = 60  # seconds: a bound for a wait that should end at once, never expected to run out


class Stopped(BaseException):
    """What Streamlit raises in a stopped run's thread at its next Streamlit call."""


class Agent:
    """A turn that appends the message to a list in the state; ``hold`` blocks a message's turn
    until its event is set, ``stop`` makes it end as a stopped run does."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.hold: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.stop: set[str] = set()

    def __call__(self, message: str, state: dict[str, Any]) -> tuple[dict, dict]:
        self.ran.append(message)
        self.started.setdefault(message, threading.Event()).set()
        if message in self.hold:
            assert self.hold[message].wait(WAIT)
        if message in self.stop:
            self.stop.discard(message)
            raise Stopped
        said = [*state.get("said", []), message]
        return {**state, "said": said}, {"text": f"reply to {message}"}


def transcript(convo: support.Conversation) -> list[str]:
    return [m["text"] for m in convo.snapshot()[0][1:]]  # without the greeting


def in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(*args)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_message_sent_during_a_turn_is_answered_after_it() -> None:
    convo, agent = support.Conversation(), Agent()
    agent.hold["retirees"] = threading.Event()
    first = convo.submit("retirees", MAX)
    old_run, errors = in_thread(convo.work_until, first, agent)
    assert agent.started.setdefault("retirees", threading.Event()).wait(WAIT)

    second = convo.submit("show me a pug", MAX)  # the new run: queued before anything else
    assert [p.text for p in convo.snapshot()[1]] == ["retirees", "show me a pug"]
    new_run, new_errors = in_thread(convo.work_until, second, agent)
    new_run.join(0.2)
    assert new_run.is_alive() and agent.ran == ["retirees"]  # it waits for the first turn

    agent.hold["retirees"].set()
    old_run.join(WAIT)
    new_run.join(WAIT)
    assert not errors and not new_errors
    assert agent.ran == ["retirees", "show me a pug"]
    assert transcript(convo) == [
        "retirees",
        "reply to retirees",
        "show me a pug",
        "reply to show me a pug",
    ]
    assert convo.snapshot()[2]["said"] == ["retirees", "show me a pug"]  # the state chained
    assert not convo.pending


def test_a_turn_stopped_half_way_is_run_again_by_the_next_run() -> None:
    convo, agent = support.Conversation(), Agent()
    agent.stop.add("retirees")
    first = convo.submit("retirees", MAX)
    with pytest.raises(Stopped):
        convo.work_until(first, agent)
    assert [p.text for p in convo.pending] == ["retirees"] and transcript(convo) == []

    second = convo.submit("yes", MAX)
    convo.work_until(second, agent)
    assert agent.ran == ["retirees", "retirees", "yes"]
    assert transcript(convo) == ["retirees", "reply to retirees", "yes", "reply to yes"]
    assert convo.snapshot()[2]["said"] == ["retirees", "yes"]


def test_refusals_and_start_over_keep_their_place_in_the_queue() -> None:
    convo, agent = support.Conversation(), Agent()
    convo.submit("retirees", MAX)
    convo.submit("x" * (MAX + 1), MAX)
    convo.submit("no\x00", MAX)
    convo.submit("", MAX, kind=support.RESTART)
    last = convo.submit("dog lovers", MAX)
    convo.work_until(last, agent)
    # The refused messages were never read; the start over cleared what came before it.
    assert agent.ran == ["retirees", "dog lovers"]
    assert transcript(convo) == ["dog lovers", "reply to dog lovers"]
    assert convo.snapshot()[2]["said"] == ["dog lovers"]

    convo, agent = support.Conversation(), Agent()
    convo.submit("retirees", MAX)
    refused = convo.submit("no\x00" + "x" * 500, MAX)
    convo.work_until(refused, agent)
    user, reply = convo.snapshot()[0][-2:]
    assert user["text"] == "no\ufffd" + "x" * 197 + "…"  # shown shortened, never read
    assert reply["error"] == "message_refused" and "U+0000" in reply["text"]
    assert agent.ran == ["retirees"]
