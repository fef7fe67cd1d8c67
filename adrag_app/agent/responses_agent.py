"""The chat agent as an MLflow ``ResponsesAgent``: log it, serve it, evaluate it like any model.

Where the conversation state lives (the agent is a state machine, MLflow serving is
stateless):

* the honest way: the caller sends the previous turn's ``custom_outputs["state"]`` back as
  ``custom_inputs["state"]``; the turn then continues exactly where it was. The Streamlit app
  keeps the same state in its session.
* without it (a generic chat client that only sends the message history), the state is
  rebuilt by replaying the earlier *user* messages through the state machine. Replay
  repeats searches (deterministic for a given index) but never generation: a conversation
  whose ad was already made resumes at the photo it was made from. With the LLM planner the
  replayed proposals may differ from the ones the marketer saw; ``custom_outputs`` says how
  many turns were replayed so a client can tell.

``custom_inputs["brand"]`` picks the brand image (a path in the volume's ``brand/``).

Each turn's output items are the tool calls (``function_call`` + ``function_call_output``
with the tool's small JSON) followed by the assistant's text. ``ResponsesAgent`` traces
``predict`` as an AGENT span; the turn's own AGENT span and the tool spans nest inside it. A
span processor passes every span's inputs and outputs through
:func:`adrag_assets.redact.redact`, since the automatic span records the raw request.

Models-from-code: ``mlflow.pyfunc.log_model(name="adrag_agent",
python_model="adrag_app/mlflow_model.py")``.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable
from typing import Any

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

from adrag_app.agent.agent import Agent, AgentState, Reply
from adrag_app.agent.llm_agent import make_agent
from adrag_app.planner.planner import make_planner
from adrag_app.planner.segments import load_catalog
from adrag_app.service.tool import ServiceTool, ToolContext
from adrag_assets import tracing
from adrag_assets.redact import redact

STATE_KEY = "state"


def _redact_span(span: Any) -> None:
    # The automatic AGENT span of predict records the raw request: redact it like ours.
    if span.inputs is not None:
        span.set_inputs(redact(span.inputs))
    if span.outputs is not None:
        span.set_outputs(redact(span.outputs))


_processor_installed = False


def _setup_tracing() -> bool:
    """Point MLflow at adrag's store (and redact); False when tracing is off or broken."""
    global _processor_installed
    if not tracing.configure():
        return False
    if not _processor_installed:
        mlflow.tracing.configure(span_processors=[_redact_span])
        _processor_installed = True
    return True


def message_text(item: Any) -> tuple[str, str]:
    """(role, text) of a Responses input item (dict or pydantic); ("", "") for other items."""
    data = item.model_dump() if hasattr(item, "model_dump") else dict(item)
    if data.get("type", "message") != "message" or "role" not in data:
        return "", ""
    content = data.get("content")
    if isinstance(content, str):
        return data["role"], content
    parts = [
        str(part.get("text") or "")
        for part in content or []
        if isinstance(part, dict) and part.get("type") in ("input_text", "output_text")
    ]
    return data["role"], " ".join(p for p in parts if p)


class _NoGenerate:
    """The real tool for searches; generation is refused (used while replaying history)."""

    def __init__(self, tool: Any) -> None:
        self._tool = tool
        self.name = tool.name

    @property
    def volume(self):
        return self._tool.volume

    def __call__(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        if arguments.get("generate"):
            raise RuntimeError("generation is not repeated when replaying the history")
        return self._tool(arguments, context)


class AdragResponsesAgent(ResponsesAgent):
    """The adrag chat agent behind MLflow's Responses API."""

    def __init__(self, agent: Agent | None = None) -> None:
        self._agent = agent

    @property
    def agent(self) -> Agent:
        # Built on first use, in the serving process: settings come from its environment.
        if self._agent is None:
            tool = ServiceTool()
            planner = make_planner(
                tool.settings.llm,
                catalog=load_catalog(tool.settings.volume_uri),
                vocabulary=tool.label_counts,
            )
            self._agent = make_agent(tool, planner, tool.settings.llm)
        return self._agent

    def load_context(self, context: Any) -> None:
        _setup_tracing()

    def __getstate__(self) -> dict[str, Any]:
        # Logged by value (cloudpickle): never pickle a live tool, index or credentials.
        return {"_agent": None}

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        return self._respond(request)

    def _respond(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        users = [text for role, text in map(message_text, request.input) if role == "user"]
        message = users[-1] if users else ""
        custom = dict(request.custom_inputs or {})
        context = request.context
        # A client without adrag's state may still name its conversation (and its user):
        # the traces of that conversation then share one MLflow session.
        named = str(context.conversation_id or "") if context is not None else ""
        replayed = 0
        if custom.get(STATE_KEY):
            state = AgentState.from_dict(custom[STATE_KEY])
        else:
            state, replayed = self._replay(users[:-1], custom.get("brand"), named)
        if named and not state.conversation_id:
            state.conversation_id = named
        if "brand" in custom:
            state.brand = custom["brand"] or None
        agent = self.agent
        if context is not None and context.user_id:
            agent = agent.for_user(str(context.user_id))
        state, reply = agent.handle(state, message)
        return ResponsesAgentResponse(
            output=self._items(reply),
            custom_outputs={
                STATE_KEY: state.to_dict(),
                "phase": reply.phase,
                "candidate": reply.candidate,
                "ad": reply.ad,
                "notes": reply.notes,
                "error": reply.error,
                "replayed_turns": replayed,
                "conversation_id": state.conversation_id,
            },
        )

    def _replay(
        self, messages: Iterable[str], brand: str | None, conversation_id: str = ""
    ) -> tuple[AgentState, int]:
        state = AgentState(brand=brand or None, conversation_id=conversation_id)
        messages = list(messages)
        if not messages:
            return state, 0
        replayer = Agent(_NoGenerate(self.agent.tool), self.agent.planner, user=self.agent.user)
        with tracing.span("replay_history", tracing.CHAIN, inputs={"turns": len(messages)}):
            for text in messages:
                state, _ = replayer.handle(state, text)
        return state, len(messages)

    def _items(self, reply: Reply) -> list[dict[str, Any]]:
        items = []
        for call in reply.tool_calls:
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            items.append(
                self.create_function_call_item(
                    id=f"fc_{uuid.uuid4().hex[:12]}",
                    call_id=call_id,
                    name=call.name,
                    arguments=json.dumps(call.arguments),
                )
            )
            output = call.output if call.output is not None else {"error": call.error}
            items.append(self.create_function_call_output_item(call_id, json.dumps(output)))
        text = "\n\n".join([reply.text, *(f"Note: {n}" for n in reply.notes)])
        items.append(self.create_text_output_item(text, id=f"msg_{uuid.uuid4().hex[:12]}"))
        return items


def _configured_first(traced: Any) -> Any:
    """``predict`` as ResponsesAgent wrapped it (an AGENT span), with adrag's tracing set up
    *before* that span starts: otherwise the first call, when the model is used without
    ``load_context``, is traced into MLflow's default store (``./mlflow.db``). With tracing
    off (``ADRAG_TRACING=off``, or no usable store) the automatic span is skipped too, without
    switching MLflow tracing off for the rest of the process."""

    @functools.wraps(traced)
    def predict(self: AdragResponsesAgent, request: Any) -> ResponsesAgentResponse:
        if _setup_tracing():
            return traced(self, request)
        if not isinstance(request, ResponsesAgentRequest):
            request = ResponsesAgentRequest(**dict(request))
        return self._respond(request)

    return predict


AdragResponsesAgent.predict = _configured_first(AdragResponsesAgent.predict)  # type: ignore[method-assign]
