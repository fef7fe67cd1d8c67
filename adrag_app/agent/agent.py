"""The marketer's chat agent: an explicit, serialisable state machine around one tool.

The conversation (the agent owns the policy; the image-gen service is its tool)::

    awaiting_segment --segment--> proposed --yes--> showing_candidate --yes--> generating
         ^                          |  ^ no: another idea    |  no: next of the top-3      |
         |                          |  |                     |  no on the last: new idea   |
         +------- start over -------+--+---------------------+  + new search               |
                                                             ^------- failure -------------+
                                                                      success --> done

* a segment gets a proposal (a pet description and a one-line reason) from the planner;
* "yes" searches (tool, ``generate=false``) and shows candidate #0 of the top-3;
* "not quite" shows #1, then #2 of the same top-3, without searching again; rejecting the
  last one gets a different proposal and a new search; "back" shows the previous one;
* "yes" on a candidate generates the ad (tool, ``generate=true``, the same ``seed_index``);
  a failure is said in plain words and the candidate stays on screen;
* a typed description is searched as is, at any point; a typed segment starts over on it
  ("now another ad, this time for retirees" too); a question is answered briefly without
  changing anything;
* with an ad on screen, an edit ("make it warmer and add the headline 'Home at last'", "as an
  Instagram story", "move the bottle to the left", "another variant") goes to the tool's
  ``edit_ad`` as data and makes a new version recording its parent, without searching again;
  "undo" goes back to the previous version (nothing is deleted).

:class:`AgentState` is plain data (``to_dict``/``from_dict``, JSON-safe): the app keeps it in
its session, the MLflow ``ResponsesAgent`` passes it in ``custom_inputs``. :meth:`Agent.handle`
never mutates the state it is given, so a failed turn leaves the conversation as it was.

Paths the tool returns are checked against the volume (:func:`service.resolve_in_volume`)
before they reach the marketer: a path that escapes it is refused, whatever the tool says.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from adrag_app.access.roles import NotAllowed, Person
from adrag_app.access.spending import LimitReached
from adrag_app.agent import intents
from adrag_app.agent.when import When, find_when, only_filler
from adrag_app.generators import GenerationError
from adrag_app.planner.planner import (
    Planner,
    Proposal,
    infer_filters,
    looks_like_segment,
    make_planner,
    normalise,
)
from adrag_app.service.ad_service import MAX_EXCLUDE, TOP_K, AdServiceError
from adrag_app.service.tool import EDIT_NAME, EditUnsupported, Tool, ToolContext, check_edits
from adrag_assets import tracing
from adrag_assets.images.taken import TAKEN_AFTER, TAKEN_BEFORE, TakenRange
from adrag_assets.index.search import IndexNotReady
from adrag_assets.volume import is_file, open_volume

log = logging.getLogger(__name__)

AWAITING_SEGMENT = "awaiting_segment"
PROPOSED = "proposed"
SHOWING = "showing_candidate"
GENERATING = "generating"  # only while the tool generates; never the state after a turn
DONE = "done"
PHASES = (AWAITING_SEGMENT, PROPOSED, SHOWING, GENERATING, DONE)

GREETING = (
    "Hi! Which audience segment is this ad for? For example *young urban professionals*, "
    "*families with young children* or *retirees*."
)
NO_INDEX = (
    "There are no photos in the search index yet, so I cannot search. Build it first: run "
    "`adrag ingest` (or materialize the assets in the Dagster UI), then say *yes* again."
)


@dataclass
class AgentState:
    """Everything the conversation needs between turns; plain JSON-safe data."""

    phase: str = AWAITING_SEGMENT
    segment: str = ""
    proposal: dict[str, Any] | None = None  # Proposal.as_dict() being searched / shown
    proposed: list[str] = field(default_factory=list)  # descriptions used for this segment
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the current top-3
    shown: int = 0  # index into candidates
    rejections: int = 0  # "not quite"s on the current top-3
    ad: dict[str, Any] | None = None  # the last ad made: {"path", "sidecar", ...}
    brand: str | None = None  # the brand image to use (path in the volume), None = default
    # Image ids the marketer said "not quite" to in this conversation: no search brings them
    # back (until "back" to one of them, or a start over).
    rejected: list[str] = field(default_factory=list)
    # The rejections the current top-3 was searched with: a generation searches again and
    # must get the same top-3, so it carries these, not the rejections made since.
    excluded: list[str] = field(default_factory=list)
    # "More like this": the image id the current top-3 is like (searched by its vector, not
    # by the description); "" for a search by description. A generation searches the same way.
    like: str = ""
    # Names the conversation in traces (MLflow's session); kept across "start over".
    conversation_id: str = ""
    # What was said, ``{"role": "user" | "assistant", "content": str}``, the last few turns:
    # what an LLM-driven agent reads as the conversation. The rule-driven agent keeps none.
    history: list[dict[str, str]] = field(default_factory=list)
    # Every version of the ads made for this segment, oldest first, each as ``ad`` is (with
    # "version", "parent" (the parent's path, "" for an ad made from a photo), "edits",
    # "spec"): "undo" walks back through them; nothing is ever deleted.
    versions: list[dict[str, Any]] = field(default_factory=list)
    # The placements the ad is made in (the app's toggles); empty: the tool's default set.
    placements: list[str] = field(default_factory=list)
    # When the photos were taken ("from last summer"): TakenRange.as_filters(), added to
    # every search's filters; and how the marketer said it. Empty: any time.
    taken: dict[str, str] = field(default_factory=dict)
    taken_said: str = ""

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AgentState:
        """A state from ``to_dict`` output; unknown keys are ignored, wrong types refused."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("the agent state must be a JSON object")
        known = {k: copy.deepcopy(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        state = cls(**known)
        if state.phase not in PHASES:
            raise ValueError(f"unknown phase {state.phase!r}")
        if not isinstance(state.candidates, list) or not isinstance(state.proposed, list):
            raise ValueError("candidates and proposed must be lists")
        for name in ("rejected", "excluded"):
            ids = getattr(state, name)
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError(f"{name} must be a list of image ids")
        if not isinstance(state.like, str):
            raise ValueError("like must be an image id")
        if not isinstance(state.versions, list) or not all(
            isinstance(v, dict) and isinstance(v.get("path"), str) for v in state.versions
        ):
            raise ValueError("versions must be a list of ads ({path, ...} objects)")
        if not isinstance(state.placements, list) or not all(
            isinstance(p, str) for p in state.placements
        ):
            raise ValueError("placements must be a list of placement names")
        if not isinstance(state.conversation_id, str):
            raise ValueError("conversation_id must be a string")
        if not isinstance(state.taken_said, str):
            raise ValueError("taken_said must be a string")
        if not isinstance(state.taken, dict) or set(state.taken) - {TAKEN_AFTER, TAKEN_BEFORE}:
            raise ValueError("taken holds only taken_after and taken_before")
        TakenRange.from_filters(state.taken)  # ValueError for days that are not days
        if not isinstance(state.history, list) or not all(
            isinstance(m, dict)
            and m.get("role") in ("user", "assistant")
            and isinstance(m.get("content"), str)
            for m in state.history
        ):
            raise ValueError("history must be a list of {role: user|assistant, content} objects")
        if state.candidates and not 0 <= int(state.shown) < len(state.candidates):
            raise ValueError("shown is out of range")
        if state.phase == GENERATING:
            # A turn that died mid-generation (the process was killed): back to the photo.
            state.phase = SHOWING if state.candidates else AWAITING_SEGMENT
        return state

    def current(self) -> dict[str, Any] | None:
        if self.candidates and 0 <= self.shown < len(self.candidates):
            return self.candidates[self.shown]
        return None


@dataclass
class ToolCall:
    """One call of the tool in a turn, as the ResponsesAgent reports it."""

    name: str
    arguments: dict[str, Any]
    context: dict[str, Any]
    output: dict[str, Any] | None = None
    error: str = ""


@dataclass
class Reply:
    """What the marketer sees after a turn."""

    text: str
    phase: str
    candidate: dict[str, Any] | None = None  # with "of": how many candidates there are
    ad: dict[str, Any] | None = None
    proposal: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # e.g. the LLM planner fell back
    error: str = ""  # a short kind: no_index, search_failed, generation_failed, refused_path
    tool_calls: list[ToolCall] = field(default_factory=list)
    # How the message was read: yes | no | back | restart | segment | description | question
    # | more | edit | undo
    intent: str = ""
    edits: dict[str, Any] = field(default_factory=dict)  # for an edit: what was changed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Turn:
    """Collects the pieces of one reply while the handlers run."""

    def __init__(self, message: str = "") -> None:
        self.message = message  # as the marketer typed it
        self.lines: list[str] = []
        self.notes: list[str] = []
        self.candidate: dict[str, Any] | None = None
        self.ad: dict[str, Any] | None = None
        self.error = ""
        self.tool_calls: list[ToolCall] = []
        self.intent = ""
        self.edits: dict[str, Any] = {}
        self.when: When | None = None  # a date phrase read in this message

    def say(self, text: str) -> None:
        self.lines.append(text)


class Agent:
    """The conversation policy. ``tool`` is its only way to search and generate."""

    driver = "rules"  # who reads the messages: "rules" here, "llm" in LlmAgent

    def __init__(
        self,
        tool: Tool,
        planner: Planner | None = None,
        *,
        user: str = "",
        person: Person | None = None,
    ) -> None:
        self.tool = tool
        self.planner = planner or make_planner()
        # Who signed in (their role binds every tool call); None: no sign-in, ``user`` only.
        self.person = person
        self.user = person.display if person else user

    # -- entry points --------------------------------------------------------------------

    def handle(self, state: AgentState, message: str) -> tuple[AgentState, Reply]:
        """One turn: the new state and the reply. ``state`` itself is left untouched."""
        state = AgentState.from_dict(state.to_dict())
        if not state.conversation_id:
            # The first turn names the conversation; every later turn carries the name in the
            # state, so all its traces share one MLflow session.
            state.conversation_id = new_conversation_id()
        # "from last summer" narrows the searches; what is left is read as usual.
        when = find_when(message)
        intent = intents.parse(when.rest if when else message, state.phase)
        with tracing.span(
            "agent_turn",
            tracing.AGENT,
            inputs={"message": message, "phase": state.phase, "segment": state.segment},
            attributes={
                "intent": intent.kind,
                "planner": getattr(self.planner, "name", ""),
                "driver": self.driver,
                "conversation_id": state.conversation_id,
                # Who signed in (subject and email; never a token or cookie).
                **(
                    {"user_subject": self.person.subject, "user_email": self.person.email}
                    if self.person
                    else {}
                ),
            },
        ) as span:
            span.set_session(state.conversation_id, self.user)
            turn = _Turn(message)
            if when is None:
                self._dispatch(state, intent, turn)
            else:
                self._when(state, when, intent, turn)
            reply = Reply(
                text="\n\n".join(turn.lines),
                phase=state.phase,
                candidate=turn.candidate,
                ad=turn.ad,
                proposal=state.proposal,
                notes=turn.notes,
                error=turn.error,
                tool_calls=turn.tool_calls,
                intent=turn.intent or _reported(intent.kind),
                edits=turn.edits,
            )
            span.set_outputs(
                {
                    "text": reply.text,
                    "phase": reply.phase,
                    "candidate": (reply.candidate or {}).get("path"),
                    "ad": (reply.ad or {}).get("path"),
                    "error": reply.error,
                    "intent": reply.intent,
                }
            )
        return state, reply

    def for_user(self, user: str) -> Agent:
        """The same agent (tool, planner, model) acting for ``user``."""
        other = copy.copy(self)
        other.user = user
        return other

    def set_segment(self, state: AgentState, segment: str) -> tuple[AgentState, Reply]:
        """Start over on ``segment`` (the app's sidebar field)."""
        return self.handle(state, f"segment: {segment}")

    # -- dispatch ------------------------------------------------------------------------

    def _when(self, state: AgentState, when: When, intent: intents.Intent, turn: _Turn) -> None:
        """Narrow the searches to a date range (or drop it), say so, then do the rest of the
        message; a message that was only the date searches the current idea again."""
        turn.when = when
        if when.taken is None:
            state.taken, state.taken_said = {}, ""
            turn.say("Photos taken at any time, then.")
        else:
            state.taken, state.taken_said = when.taken.as_filters(), when.taken.phrase
            turn.say(f"Only photos {when.taken.describe()}.")
        if not only_filler(when.rest):
            self._dispatch(state, intent, turn)
        elif state.proposal and state.phase != AWAITING_SEGMENT:
            self._search(state, turn)
        else:
            turn.say(self._help(state))

    def _taken(self, state: AgentState) -> TakenRange | None:
        return TakenRange.from_filters(state.taken)[0]

    def _dispatch(self, state: AgentState, intent: intents.Intent, turn: _Turn) -> None:
        kind = intent.kind
        if kind == intents.EMPTY:
            turn.say(self._help(state))
        elif kind == intents.RESTART:
            self._restart(state)
            turn.say("Let's start over. " + GREETING)
        elif kind == intents.QUESTION:
            turn.say(self._answer(state, intent.text))
        elif kind == intents.SEGMENT:
            self._new_segment(state, intent.text, turn)
        elif kind == intents.DESCRIPTION:
            self._own_description(state, intent.text, turn)
        elif kind == intents.TEXT:
            if state.phase == AWAITING_SEGMENT or looks_like_segment(intent.text):
                turn.intent = intents.SEGMENT
                self._new_segment(state, intent.text, turn)
            else:
                turn.intent = intents.DESCRIPTION
                self._own_description(state, intent.text, turn)
        elif kind == intents.UNCLEAR:
            turn.say(self._clarify(state))
        elif state.phase == AWAITING_SEGMENT:
            turn.say("First tell me the audience segment the ad is for, e.g. *retirees*.")
        elif kind == intents.YES:
            self._yes(state, turn)
        elif kind == intents.NO:
            self._no(state, turn)
        elif kind == intents.BACK:
            self._back(state, turn)
        elif kind == intents.MORE:
            self._more_like(state, turn)
        elif kind == intents.EDIT:
            self._edit(state, intent.edits, turn)
        elif kind == intents.UNDO:
            self._undo(state, turn)

    def _yes(self, state: AgentState, turn: _Turn) -> None:
        if state.phase == PROPOSED:
            self._search(state, turn)
        elif state.phase == SHOWING:
            self._generate(state, turn)
        else:  # DONE
            turn.say(
                "The ad is ready: download it below. Say *not quite* to try the next photo, "
                "type another description, or *start over*."
            )
            turn.ad = state.ad

    def _no(self, state: AgentState, turn: _Turn) -> None:
        if state.phase == PROPOSED:
            if self._propose(state, turn, again=True):
                self._invite_search(turn)
            return
        # SHOWING or DONE: the next photo of the same top-3, or a new idea after the last.
        state.rejections += 1
        _reject(state)
        if state.shown + 1 < len(state.candidates):
            state.shown += 1
            state.phase = SHOWING
            self._show(state, turn)
            return
        turn.say(
            f"That was the last of the top {len(state.candidates)}, so let's try a different "
            "idea and search again."
        )
        if self._propose(state, turn, again=True):
            self._search(state, turn)

    def _back(self, state: AgentState, turn: _Turn) -> None:
        if state.phase == PROPOSED or not state.candidates:
            turn.say("There is no earlier photo to go back to. " + self._help(state))
            return
        if state.phase == SHOWING:
            if state.shown == 0:
                turn.say("This is already the best match.")
            else:
                state.shown -= 1
        state.phase = SHOWING  # from DONE: back to the photo the ad was made from
        # Going back to a photo is asking for it again: it is no longer rejected.
        back_to = str((state.current() or {}).get("image_id") or "")
        state.rejected = [i for i in state.rejected if i != back_to]
        self._show(state, turn)

    def _more_like(self, state: AgentState, turn: _Turn) -> None:
        """The top-3 photos most like the one on screen (itself and rejections excluded);
        the description stays, for the ad's words."""
        shown = state.current()
        image_id = str((shown or {}).get("image_id") or "")
        if state.phase not in (SHOWING, DONE) or not image_id:
            turn.say("There is no photo on screen to find more like. " + self._help(state))
            return
        self._search(state, turn, like=image_id)

    def _edit(self, state: AgentState, edits: dict[str, Any], turn: _Turn) -> None:
        """A new version of the ad on screen with ``edits``; the parent stays as it was."""
        if state.phase == SHOWING:
            # "Yes, as an Instagram story": make the ad from the photo on screen, then change it.
            self._generate(state, turn)
            if state.phase != DONE:
                return
        parent = state.ad
        edit_ad = getattr(self.tool, "edit_ad", None)
        if state.phase != DONE or not parent:
            turn.say("There is no ad to change yet. " + self._help(state))
            return
        if edit_ad is None:
            turn.say("This ad maker cannot change an ad; type a new description instead.")
            return
        try:
            edits = check_edits(edits)
        except ValueError as e:
            turn.say(f"I cannot make that change: {e}.")
            return
        turn.edits = edits
        context = self._context(state)
        call = ToolCall(EDIT_NAME, {"ad": parent["path"], "edits": edits}, context.as_dict())
        turn.tool_calls.append(call)
        with tracing.span(EDIT_NAME, tracing.TOOL, inputs=call.arguments) as span:
            try:
                output = edit_ad(dict(parent), edits, context)
                ad = self._checked_ad(output)
            except EditUnsupported as e:
                call.error = str(e)
                turn.error = "edit_unsupported"
                turn.ad = parent
                turn.say(f"Sorry, {e}.")
                return
            except Exception as e:
                call.error = f"{type(e).__name__}: {e}"
                turn.error = "edit_failed"
                turn.ad = parent
                turn.say(_generation_failure(e).replace("The ad could not", "The change could not"))
                return
            call.output = output
            span.set_outputs(output)
        ad.update(
            version=int(output.get("version") or int(parent.get("version") or 1) + 1),
            parent=str(output.get("parent") or parent["path"]),
            edits=dict(output.get("edits") or edits),
            spec=dict(output.get("spec") or {}),
        )
        state.ad = ad
        state.versions = [*state.versions, ad]
        turn.ad = ad
        unsupported = [str(k) for k in output.get("unsupported") or ()]
        for kind in unsupported:
            turn.notes.append(
                f"The {kind} change is recorded in this version but this ad maker cannot draw "
                "it yet, so the image does not show it."
            )
        turn.say(
            f"Done: {_describe_edits({k: v for k, v in edits.items() if k not in unsupported})}. "
            f"This is version {ad['version']}, made from version "
            f"{parent.get('version') or 1}; say *undo* to go back to it, or ask for another "
            "change."
        )

    def _undo(self, state: AgentState, turn: _Turn) -> None:
        """Back to the version the ad on screen was made from; without one, to its photo."""
        current = state.ad or {}
        parent = next(
            (v for v in state.versions if v["path"] == current.get("parent") and v["path"]),
            None,
        )
        if parent is None:
            turn.intent = intents.BACK
            self._back(state, turn)
            return
        state.ad = parent
        turn.ad = parent
        turn.say(
            f"Back to version {parent.get('version') or 1} (the one you left is kept). Ask for "
            "another change, or say *undo* again."
        )

    # -- steps ---------------------------------------------------------------------------

    def _restart(self, state: AgentState) -> None:
        kept = {
            "brand": state.brand,
            "conversation_id": state.conversation_id,
            "placements": state.placements,
        }
        for key, value in asdict(AgentState()).items():
            setattr(state, key, value)
        for key, value in kept.items():
            setattr(state, key, value)

    def _new_segment(self, state: AgentState, segment: str, turn: _Turn) -> None:
        segment = " ".join(segment.split())[:200]
        # A new segment starts over, but not from the date said with it.
        taken = (state.taken, state.taken_said) if turn.when else ({}, "")
        self._restart(state)
        state.taken, state.taken_said = taken
        state.segment = segment
        if self._propose(state, turn):
            self._invite_search(turn)

    def _propose(self, state: AgentState, turn: _Turn, *, again: bool = False) -> bool:
        """Ask the planner for a description not proposed yet; False if it failed."""
        try:
            proposal = self.planner.propose(state.segment, tuple(state.proposed))
        except Exception as e:  # a planner bug must not end the conversation
            log.exception("planner failed")
            turn.error = "planner_failed"
            turn.say(
                f"I could not come up with an idea ({type(e).__name__}). Type a photo "
                "description yourself, e.g. *a beagle in a sunny park*."
            )
            return False
        if proposal.note:
            turn.notes.append(proposal.note)
        state.proposal = proposal.as_dict()
        state.proposed.append(proposal.description)
        state.candidates, state.shown, state.rejections = [], 0, 0
        state.phase = PROPOSED
        audience = f" for **{state.segment}**" if state.segment else ""
        lead = "Another idea: how about" if again else "How about"
        turn.say(f"{lead} **{proposal.description}**{audience}? {_sentence(proposal.reason)}")
        return True

    def _invite_search(self, turn: _Turn) -> None:
        turn.say(
            "Say *yes* to see matching photos, *no* for another idea, or type your own description."
        )

    def _own_description(self, state: AgentState, text: str, turn: _Turn) -> None:
        description = " ".join(text.split())
        proposal = Proposal(description, "your own description", infer_filters(text), "marketer")
        state.proposal = proposal.as_dict()
        if normalise(description) not in {normalise(d) for d in state.proposed}:
            state.proposed.append(description)
        turn.say(f"Searching for **{description}**.")
        self._search(state, turn)

    def _context(self, state: AgentState) -> ToolContext:
        filters = {**dict((state.proposal or {}).get("filters") or {}), **state.taken}
        person = self.person
        return ToolContext(
            state.segment,
            filters,
            state.brand,
            self.user,
            tuple(state.excluded),
            state.like,
            tuple(state.placements),
            subject=person.subject if person else "",
            email=person.email if person else "",
            role=person.role.label if person else "",
        )

    def _call_tool(
        self, arguments: dict[str, Any], context: ToolContext, turn: _Turn
    ) -> dict[str, Any]:
        call = ToolCall(self.tool.name, dict(arguments), context.as_dict())
        turn.tool_calls.append(call)
        with tracing.span(
            self.tool.name,
            tracing.TOOL,
            inputs={"arguments": arguments, "context": context.as_dict()},
        ) as span:
            try:
                output = self.tool(dict(arguments), context)
            except Exception as e:
                call.error = f"{type(e).__name__}: {e}"
                raise
            call.output = output
            span.set_outputs(output)
        return output

    def _search(self, state: AgentState, turn: _Turn, *, like: str = "") -> None:
        proposal = Proposal.from_dict(state.proposal or {})
        state.candidates, state.shown, state.rejections = [], 0, 0
        state.phase = PROPOSED
        state.excluded = list(state.rejected)
        state.like = like
        arguments = {"description": proposal.description, "generate": False}
        try:
            output = self._call_tool(arguments, self._context(state), turn)
        except IndexNotReady:
            turn.error = "no_index"
            turn.say(NO_INDEX)
            return
        except ValueError as e:  # a description or filter the service refuses
            turn.error = "search_failed"
            turn.say(f"I cannot search for that: {e}. Try another description.")
            return
        except Exception as e:
            log.exception("search failed")
            turn.error = "search_failed"
            turn.say(
                f"The search failed ({type(e).__name__}: {e}). Nothing changed; try again in a "
                "moment, or check the index in the sidebar."
            )
            return
        candidates, refused = self._checked_candidates(output)
        if refused:
            turn.error = "refused_path"
            turn.notes.append(
                f"{refused} result(s) were refused because their path lies outside the volume."
            )
        if not candidates:
            # An answer, not an error (the app shows errors in red).
            taken = self._taken(state)
            where = f"among the photos {taken.describe()}" if taken else "in the photo library"
            turn.say(
                f"There is no good match for **{proposal.description}** {where}. "
                "Could you describe the photo you want another way? Type a new description, "
                "or say *no* for another idea"
                + (", or *any time* to search photos of every date." if taken else ".")
            )
            return
        state.candidates = candidates
        state.phase = SHOWING
        self._show(state, turn)

    def _checked_candidates(self, output: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The tool's candidates whose paths are real files inside the volume; and how many
        were refused."""
        kept, refused = [], 0
        for item in list(output.get("candidates") or [])[:TOP_K]:
            try:
                path = str(item["path"])
                if not is_file(open_volume(self.tool.volume), path):
                    raise ValueError(f"{path!r} is not a file in the volume")
                rank = int(item["rank"])
            except (KeyError, TypeError, ValueError) as e:
                log.warning("refused a tool result: %s", e)
                refused += 1
                continue
            kept.append(
                {
                    "rank": rank,
                    "path": path,
                    "score": float(item.get("score") or 0.0),
                    "image_id": str(item.get("image_id") or ""),
                    "labels": dict(item.get("labels") or {}),
                }
            )
        return kept, refused

    def _show(self, state: AgentState, turn: _Turn) -> None:
        shown = _numbered(state.candidates[state.shown], len(state.candidates))
        turn.candidate = shown
        description = (state.proposal or {}).get("description", "")
        which = "the best match" if shown["number"] == 1 else "the next best"
        wanted = "like the photo you picked" if state.like else f"for *{description}*"
        turn.say(
            f"Photo **{shown['number']} of {shown['of']}** {wanted} ({which}). "
            "Make the ad with this photo? Say *yes* to make it, or *no* for the next one."
        )

    def _generate(self, state: AgentState, turn: _Turn) -> None:
        shown = state.current()
        if shown is None:
            turn.say(self._help(state))
            return
        description = (state.proposal or {}).get("description", "")
        arguments = {"description": description, "seed_index": shown["rank"], "generate": True}
        state.phase = GENERATING
        try:
            output = self._call_tool(arguments, self._context(state), turn)
            ad = self._checked_ad(output)
        except Exception as e:
            state.phase = SHOWING
            turn.error = "generation_failed"
            turn.candidate = _numbered(shown, len(state.candidates))
            turn.say(_generation_failure(e))
            return
        ad.update(version=1, parent="", edits={}, spec={})
        state.ad = ad
        state.versions = [*state.versions, ad]
        state.phase = DONE
        turn.ad = ad
        seed_path = (ad.get("seed") or {}).get("path")
        if seed_path and seed_path != shown["path"]:
            # The index changed between search and generation (a sync ran): say so.
            turn.notes.append(
                "The photo library changed since the search, so the ad uses a different photo "
                "from the one shown."
            )
        turn.say(
            "Your ad is ready. Download it below, ask for a change (a headline, *warmer*, *as an "
            "Instagram story*, *another variant*), say *not quite* to try the next photo, type "
            "another description, or *start over*."
        )

    def _checked_file(self, path: str, what: str) -> str:
        """``path`` if it is a file in the volume; :class:`_RefusedPath` naming ``what``."""
        try:
            found = is_file(open_volume(self.tool.volume), path)
        except ValueError as e:
            raise _RefusedPath(f"the tool returned {what} outside the volume ({e})") from e
        if not found:
            raise _RefusedPath(f"the tool returned {what} that is not a file: {path!r}")
        return path

    def _checked_ad(self, output: dict[str, Any]) -> dict[str, Any]:
        ad = dict(output.get("ad") or {})
        path = self._checked_file(str(ad.get("path") or ""), "an ad path")
        creatives = []
        for creative in output.get("creatives") or ():
            # Every size of the set is shown and downloaded: each must be a file in the volume.
            self._checked_file(str((creative or {}).get("path") or ""), "a creative")
            creatives.append(_creative_summary(creative))
        return {
            "path": path,
            "sidecar": str(ad.get("sidecar") or ""),
            "creatives": creatives,
            "seed": dict(output.get("seed") or {}),
            "brand": str(output.get("brand") or ""),
            "generator": str(output.get("generator") or ""),
            "model": str(output.get("model") or ""),
        }

    # -- talk ------------------------------------------------------------------------------

    def _clarify(self, state: AgentState) -> str:
        """One line when a reply could be yes or no: ask rather than guess (or search)."""
        if state.phase == PROPOSED:
            return (
                "Sorry, I'm not sure: shall I search for this idea (*yes*), or try another (*no*)?"
            )
        if state.phase == SHOWING:
            n = state.shown + 1
            return (
                f"Sorry, I'm not sure: make the ad with photo {n} (*yes*), see the next one "
                "(*no*), or describe the pet you want?"
            )
        return self._help(state)

    def _help(self, state: AgentState) -> str:
        return {
            AWAITING_SEGMENT: GREETING,
            PROPOSED: "Say *yes* to search for the proposed photo, *no* for another idea, or "
            "type your own description.",
            SHOWING: "Say *yes* to make the ad from this photo, *not quite* for the next one, "
            "*back* for the previous one, type your own description, or *start over*.",
            DONE: "Your ad is ready. Ask for a change (a headline, *warmer*, *as an Instagram "
            "story*, *another variant*), say *not quite* to try the next photo, type another "
            "description, or *start over* with a new segment.",
        }.get(state.phase, GREETING)

    def _answer(self, state: AgentState, question: str) -> str:
        words = set(normalise(question).split())
        proposal = state.proposal or {}
        if words & {"why", "reason"} and proposal:
            audience = f" for {state.segment}" if state.segment else ""
            return f"I suggested *{proposal['description']}*{audience}: {proposal['reason']}."
        if words & {"score", "scores", "rank", "ranking", "match"}:
            return (
                "The score is how closely the photo matches the description in our search "
                "(higher is closer); photo 1 is the best match of the top 3."
            )
        if words & {"brand", "product", "logo"}:
            return "The ad uses the brand image chosen in the sidebar (or the first one there)."
        if words & {"where", "saved", "download", "file"} and state.ad:
            return "The ad is saved with the brand's ads; the download button below gets it."
        return "I help you pick a pet photo for your audience and make the ad. " + self._help(state)


def new_conversation_id() -> str:
    """A fresh conversation id (random: it says nothing about who or what)."""
    return f"conv-{uuid.uuid4().hex}"


class _RefusedPath(RuntimeError):
    pass


# What the conversation keeps of each creative of a set (the sidecar holds the rest).
_CREATIVE_KEYS = (
    "path", "sidecar", "placement", "width", "height", "headline", "primary_text", "cta",
    "version", "parent", "set_id",
)  # fmt: skip


def _creative_summary(creative: Mapping[str, Any]) -> dict[str, Any]:
    return {k: creative[k] for k in _CREATIVE_KEYS if k in creative}


def _reject(state: AgentState) -> None:
    """Remember the photo on screen as rejected, so no later search shows it again."""
    image_id = str((state.current() or {}).get("image_id") or "")
    if image_id and image_id not in state.rejected:
        # The oldest rejections go first past the service's limit on exclusions.
        state.rejected = [*state.rejected, image_id][-MAX_EXCLUDE:]


def _numbered(candidate: dict[str, Any], of: int) -> dict[str, Any]:
    """The candidate as shown: ``number`` counts from 1 for people; ``rank`` stays the
    tool's 0-based index."""
    return dict(candidate, of=of, number=int(candidate["rank"]) + 1)


def _describe_edits(edits: dict[str, Any]) -> str:
    """The edits in a few words: 'headline "Home at last", warmer'."""
    parts = []
    if "headline" in edits:
        parts.append(f'headline "{edits["headline"]}"')
    parts += list(edits.get("tone") or ())
    product = edits.get("product") or {}
    if "position" in product:
        parts.append(f"product to the {product['position'].replace('-', ' ')}")
    if "scale" in product:
        parts.append("product " + ("bigger" if product["scale"] > 1 else "smaller"))
    if "placement" in edits:
        parts.append("as " + ", ".join(edits["placement"]))
    if "variant" in edits:
        parts.append("another variant")
    return ", ".join(parts)


def _reported(kind: str) -> str:
    """The intent as reported to clients: unclear and empty replies are questions back."""
    return intents.QUESTION if kind in (intents.UNCLEAR, intents.EMPTY) else kind


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _generation_failure(error: BaseException) -> str:
    """Plain words for a failed generation: why, and that nothing was saved."""
    if isinstance(error, GenerationError):
        why = str(error)
    elif isinstance(error, NotAllowed | LimitReached):
        return str(error)  # one sentence: the role needed, or the limit reached
    elif isinstance(error, _RefusedPath):
        # The tool did run: do not claim nothing was saved, only that it is not shown.
        return f"The ad was refused and is not shown: {_sentence(str(error))}"
    elif isinstance(error, IndexNotReady):
        return NO_INDEX
    elif isinstance(error, AdServiceError | ValueError):
        why = str(error)
    else:
        log.error("generation failed", exc_info=error)
        why = f"an unexpected error ({type(error).__name__}: {error})"
    return (
        f"The ad could not be made: {_sentence(why)} Nothing was saved. Say *yes* to try "
        "again, *not quite* for another photo, or type a different description."
    )
