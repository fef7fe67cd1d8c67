"""The chat agent driven by a language model, with the state machine still on guard.

When ``ADRAG_LLM_BASE_URL`` and ``ADRAG_LLM_MODEL`` are set (and ``ADRAG_LLM_ROLE`` is
``agent``, the default), each turn asks the model once, through OpenAI-compatible tool
calling: it reads the system prompt (``llm_system_prompt.md``, with what is on screen: the
phase, the segment, the proposal, the candidates and their ``seed_index``), the last turns
(:attr:`AgentState.history`) and the marketer's message, and either answers in text or calls
the one tool (:data:`~adrag_app.service.tool.TOOL_SCHEMA`).

The model proposes; the state machine disposes. A tool call is checked before anything runs:

* arguments must be valid JSON and pass :func:`~adrag_app.service.tool.check_arguments` (so
  no unknown argument, e.g. no ``exclude``: exclusions are bound by the agent, never chosen);
* ``generate=true`` only with a photo on screen, a ``seed_index`` among the candidates on
  screen, and that photo confirmed: the marketer's message this turn reads as *yes* (the
  rule-driven intents) and the index is the photo shown. The ad is made for the description
  the candidates were searched with, whatever the model wrote, so the seed is the photo seen;
* a refused call is never executed: the reply carries a note saying why, the note goes into
  the history the model reads next turn, and the built-in agent answers the message.

One model call per turn: the tool's result is reported in the agent's own words (paths
checked against the volume, failures in plain words), and the model reads it next turn.
Any failure of the model (HTTP error, timeout, a body that is not a chat completion, an
empty answer) falls back to the built-in agent for that turn, with a visible note.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from typing import Any

from adrag_app.access.roles import Person
from adrag_app.agent import intents
from adrag_app.agent.agent import (
    AWAITING_SEGMENT,
    SHOWING,
    Agent,
    AgentState,
    _Turn,
)
from adrag_app.llm import ChatClient, short_error
from adrag_app.planner.planner import Planner, Proposal, infer_filters, looks_like_segment
from adrag_app.service.tool import TOOL_NAME, TOOL_SCHEMA, Tool, check_arguments
from adrag_assets import tracing
from adrag_assets.settings import LlmSettings

log = logging.getLogger(__name__)

OFFLINE_NOTE = "The assistant is offline ({detail}); using the built-in one."
REFUSED_NOTE = "The assistant's request was refused ({why}); nothing was done."
MAX_HISTORY = 20  # messages (user + assistant) the model reads back
MAX_HISTORY_CHARS = 2000  # per message: a long paste must not crowd out the context

# Chat completions wrap a function's schema in {"type": "function", "function": {...}};
# TOOL_SCHEMA is the flat (Responses API) form.
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {k: TOOL_SCHEMA[k] for k in ("name", "description", "parameters")},
    }
]


class Refused(ValueError):
    """A tool call the state machine does not allow; its message is shown to the marketer."""


@cache
def system_prompt_template() -> str:
    return (resources.files("adrag_app.agent") / "llm_system_prompt.md").read_text("utf-8")


class LlmAgent(Agent):
    """The agent whose turns a chat model drives; the built-in policy on any model failure."""

    driver = "llm"

    def __init__(
        self,
        tool: Tool,
        planner: Planner | None = None,
        *,
        client: ChatClient,
        user: str = "",
        person: Person | None = None,
    ) -> None:
        super().__init__(tool, planner, user=user, person=person)
        self.client = client

    def __repr__(self) -> str:  # the client's repr has no key
        return f"LlmAgent(client={self.client!r})"

    # -- a turn ------------------------------------------------------------------------------

    def _dispatch(self, state: AgentState, intent: intents.Intent, turn: _Turn) -> None:
        if intent.kind in (intents.MORE, intents.EDIT, intents.UNDO):
            # "More like this" (the app's button) names no description for a model to choose:
            # the state machine searches by the photo on screen. Edits and undo are data for
            # the tool's edit_ad, read by the rules; the model reads the outcome next turn.
            super()._dispatch(state, intent, turn)
            self._remember(state, turn)
            return
        try:
            message = self._ask(state, turn.message)
        except Exception as e:  # the model is an optional helper: the turn goes on without it
            detail = short_error(e)
            log.warning("LLM agent failed (%s); using the built-in agent", detail)
            turn.notes.append(OFFLINE_NOTE.format(detail=detail))
            super()._dispatch(state, intent, turn)
        else:
            self._act(state, intent, message, turn)
        self._remember(state, turn)

    def _ask(self, state: AgentState, text: str) -> dict[str, Any]:
        """The model's message for this turn; raises on anything that is not an answer."""
        messages: list[dict[str, Any]] = [
            {
                "role": "system",
                "content": system_prompt_template().replace("{context}", screen(state)),
            },
            *state.history,
            {"role": "user", "content": text[:MAX_HISTORY_CHARS]},
        ]
        with tracing.span(
            "llm_agent", tracing.CHAT_MODEL, inputs={"messages": messages, "tools": CHAT_TOOLS}
        ) as span:
            message = self.client.complete(messages, tools=CHAT_TOOLS)
            span.set_outputs(message)
        content, refusal = message.get("content"), message.get("refusal")
        calls = message.get("tool_calls")
        if not all(isinstance(v, str | None) for v in (content, refusal)) or not isinstance(
            calls, list | None
        ):
            raise ValueError("the answer is not a chat message")
        if not (content or "").strip() and not (refusal or "").strip() and not calls:
            raise ValueError("the model answered nothing")
        return message

    def _act(
        self, state: AgentState, intent: intents.Intent, message: dict[str, Any], turn: _Turn
    ) -> None:
        text = str(message.get("content") or message.get("refusal") or "").strip()
        calls = list(message.get("tool_calls") or [])
        if self._reads_as_segment(state, intent):
            # Which segment the ad is for is the state machine's to record (it goes into the
            # ad's metadata): a new one starts over, as in the built-in agent.
            segment = " ".join(intent.text.split())[:200]
            self._restart(state)
            state.segment = segment
            turn.intent = intents.SEGMENT
        if not calls:
            # Text only (an answer, a proposal, a refusal): shown, nothing else happens.
            turn.say(text)
            return
        try:
            arguments = self._checked_call(state, intent, calls[0])
        except Refused as e:
            log.warning("refused the model's tool call: %s", e)
            turn.notes.append(REFUSED_NOTE.format(why=e))
            super()._dispatch(state, intent, turn)
            turn.error = turn.error or "refused_tool_call"
            return
        if len(calls) > 1:
            turn.notes.append(
                f"The assistant asked for {len(calls)} things at once; only the first ran."
            )
        if text:
            turn.say(text)
        if arguments["generate"]:
            turn.intent = intents.YES
            self._generate(state, turn)
            return
        description = " ".join(arguments["description"].split())
        filters = infer_filters(description)
        proposal = Proposal(description, "chosen by the assistant", filters, "llm")
        state.proposal = proposal.as_dict()
        if description not in state.proposed:
            state.proposed.append(description)
        turn.intent = turn.intent or intents.DESCRIPTION
        self._search(state, turn)

    def _checked_call(self, state: AgentState, intent: intents.Intent, call: Any) -> dict[str, Any]:
        """The call's arguments if the state machine allows them; raises :class:`Refused`."""
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or function.get("name") != TOOL_NAME:
            raise Refused("it named a tool that does not exist")
        raw = function.get("arguments")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            raise Refused("its tool arguments are not valid JSON") from None
        if not isinstance(arguments, dict):
            raise Refused("its tool arguments are not a JSON object")
        try:
            description, seed_index, generate = check_arguments(arguments)
        except ValueError as e:
            raise Refused(str(e)) from None
        if not generate:
            return {"description": description, "generate": False}
        shown = state.current()
        if state.phase != SHOWING or shown is None:
            raise Refused("it asked to make the ad, but there is no photo on screen to confirm")
        ranks = [int(c["rank"]) for c in state.candidates]
        if seed_index not in ranks:
            raise Refused(f"photo {seed_index + 1} is not among the photos on screen")
        if intent.kind != intents.YES or seed_index != int(shown["rank"]):
            raise Refused(
                f"it asked to make the ad from photo {seed_index + 1}, which you have not "
                "confirmed; say *yes* to the photo on screen to make the ad"
            )
        # _generate uses the searched description, not the model's: the service searches
        # again and seed_index points into that top-3.
        return {"description": description, "seed_index": seed_index, "generate": True}

    def _reads_as_segment(self, state: AgentState, intent: intents.Intent) -> bool:
        if intent.kind not in (intents.SEGMENT, intents.TEXT):
            return False
        if state.phase == AWAITING_SEGMENT:
            # The parser reads almost anything as a segment here; once the model has
            # answered one (and the phase stays put while it talks), "yes please" is not.
            return not state.segment or looks_like_segment(intent.text)
        return intent.kind == intents.SEGMENT or looks_like_segment(intent.text)

    def _remember(self, state: AgentState, turn: _Turn) -> None:
        """The exchange, notes included (so the model learns of a refusal), for next turn."""
        said = "\n\n".join([*turn.lines, *(f"(note: {n})" for n in turn.notes)])
        state.history = [
            *state.history,
            {"role": "user", "content": turn.message[:MAX_HISTORY_CHARS]},
            {"role": "assistant", "content": said[:MAX_HISTORY_CHARS]},
        ][-MAX_HISTORY:]


def screen(state: AgentState) -> str:
    """What the marketer sees now, in a few lines the model can act on."""
    lines = [f"phase: {state.phase}", f"audience segment: {state.segment or '(not given yet)'}"]
    if state.proposal:
        lines.append(f"current description: {state.proposal.get('description', '')}")
    if state.candidates:
        lines.append("photos of the current top-3 (seed_index: path, score):")
        for i, c in enumerate(state.candidates):
            mark = "  <- on screen" if i == state.shown and state.phase == SHOWING else ""
            lines.append(f"  {int(c['rank'])}: {c['path']}, {float(c.get('score') or 0):.3f}{mark}")
    else:
        lines.append("photos: none on screen")
    if state.rejected:
        lines.append(f"photos rejected so far: {len(state.rejected)} (kept out of searches)")
    if state.ad:
        lines.append(f"last ad made: {state.ad.get('path', '')}")
        if state.ad.get("spec"):
            lines.append(f"its edits so far: {json.dumps(state.ad['spec'], ensure_ascii=False)}")
    return "\n".join(lines)


def make_agent(
    tool: Tool,
    planner: Planner | None = None,
    llm: LlmSettings | None = None,
    *,
    user: str = "",
    person: Person | None = None,
    transport: Any = None,
) -> Agent:
    """The LLM-driven agent when a model is configured for it (``llm.drives_agent``), else
    the rule-driven one. ``transport`` is an httpx transport, for tests."""
    if llm is None or not llm.drives_agent:
        return Agent(tool, planner, user=user, person=person)
    client = ChatClient(
        llm.base_url, llm.model, llm.api_key, timeout=llm.timeout_s, transport=transport
    )
    return LlmAgent(tool, planner, client=client, user=user, person=person)
