"""What the marketer meant: yes / no (next) / back / start over / a question / free text.

Deliberately small and explicit: a closed vocabulary of the obvious variants, matched on
normalised words. Anything else is free text, which the agent takes as a segment or a photo
description. A leading "no," or "ok," in front of real content ("no, a samoyed in the snow")
is content, not a bare answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adrag_app.planner.planner import normalise

YES = "yes"
NO = "no"  # also "next", "not quite", "another": show the next option
BACK = "back"
RESTART = "restart"
QUESTION = "question"
SEGMENT = "segment"  # explicitly a new audience ("segment: retirees")
DESCRIPTION = "description"  # explicitly a photo description ("show me a pug")
TEXT = "text"  # free text: the agent decides (segment or description)
EMPTY = "empty"

_YES_PHRASES = {
    "yes", "y", "yeah", "yep", "yup", "ya", "yes please", "sure", "ok", "okay", "k", "fine",
    "confirm", "confirmed", "go", "go ahead", "do it", "lets do it", "let s do it",
    "sounds good", "looks good", "looks great", "great", "perfect", "love it", "i love it",
    "like it", "i like it", "that one", "this one", "use it", "use this one",
    "use that one", "generate", "generate it", "make it", "create it", "create the ad",
    "make the ad", "generate the ad", "approved", "approve", "good", "nice", "absolutely",
    "definitely", "correct", "right", "exactly", "agreed", "search", "yes search",
    "thumbs up", "ship it", "go for it", "works for me", "that works", "bingo",
}  # fmt: skip
_NO_PHRASES = {
    "no", "n", "nope", "nah", "not quite", "not really", "no thanks", "no thank you",
    "next", "next one", "another", "another one", "show another", "show me another",
    "show me another one", "something else", "try another", "try again", "different",
    "a different one", "other", "other one", "skip", "pass", "not this one",
    "not that one", "don t like it", "i don t like it", "dont like it", "reject", "rejected",
    "meh", "not good", "not great", "hmm no", "no way", "not for me", "keep looking",
    "not it", "wrong", "more", "show more", "give me another",
}  # fmt: skip
_BACK_PHRASES = {
    "back", "go back", "previous", "prev", "previous one", "the previous one",
    "show the previous one", "back one", "last one", "the last one", "undo",
    "go back one", "earlier one", "the one before",
}  # fmt: skip
_RESTART_PHRASES = {
    "start over", "restart", "reset", "start again", "begin again", "from scratch",
    "start from scratch", "new segment", "change segment", "new audience",
    "change audience", "clear", "new chat", "let s start over", "lets start over",
}  # fmt: skip
_EMOJI_YES = ("👍", "✅", "👌")
_EMOJI_NO = ("👎", "❌")

# Words that only soften an answer: "yes please", "ok thanks", "no, sorry".
_FILLER = {"please", "thanks", "thank", "you", "sorry", "then", "really", "just", "now", "pls"}
_LEADING_ANSWER = re.compile(
    r"^\s*(yes|yeah|yep|ok|okay|sure|no|nope|nah|not quite)\b[\s,.;:!-]*"
    r"(?:but\s+|rather\s+|instead\s+)?",
    re.I,
)
_SEGMENT_PREFIX = re.compile(
    r"^\s*(?:new\s+)?(?:segment|audience|target(?:\s+audience)?)\s*(?:is|:|=|-)?\s+(.+)$",
    re.I | re.S,
)
_DESCRIPTION_PREFIX = re.compile(
    r"^\s*(?:description\s*[:=-]|(?:(?:can|could|would)\s+you\s+)?(?:please\s+)?"
    r"(?:show\s+me|search\s+for|look\s+for|find\s+me|find|try|how\s+about|what\s+about|"
    r"use|let'?s\s+try|i\s+want|i'?d\s+like))\s+(.+?)\s*\??\s*$",
    re.I | re.S,
)
_QUESTION_WORDS = {
    "what", "why", "how", "which", "who", "where", "when", "can", "could", "would", "is",
    "are", "do", "does", "did", "should", "help", "explain",
}  # fmt: skip


@dataclass(frozen=True)
class Intent:
    kind: str
    text: str = ""  # the content for SEGMENT / DESCRIPTION / TEXT / QUESTION


_BARE = (
    (RESTART, _RESTART_PHRASES),
    (BACK, _BACK_PHRASES),
    (YES, _YES_PHRASES),
    (NO, _NO_PHRASES),
)


def _bare(words: list[str], phrases: set[str]) -> bool:
    core = [w for w in words if w not in _FILLER]
    return bool(core) and " ".join(core) in phrases


def parse(message: str) -> Intent:
    """The intent of one chat message."""
    raw = " ".join(str(message or "").split())
    if not raw:
        return Intent(EMPTY)
    if raw.startswith(_EMOJI_YES):
        return Intent(YES)
    if raw.startswith(_EMOJI_NO):
        return Intent(NO)
    words = normalise(raw).split()
    if not words:
        return Intent(EMPTY)
    for kind, phrases in _BARE:
        if _bare(words, phrases):
            return Intent(kind)
    if m := _SEGMENT_PREFIX.match(raw):
        return Intent(SEGMENT, m.group(1).strip(" .!"))
    # "no, a samoyed in the snow" / "ok, show me a pug": the answer word is just a lead-in.
    lead = _LEADING_ANSWER.match(raw)
    body = raw[lead.end() :].strip() if lead else raw
    if lead and not body:
        return Intent(YES if normalise(lead.group(1)) in _YES_PHRASES else NO)
    if lead:  # "yes, use this one", "no, next one please": the answer, said twice
        rest = normalise(body).split()
        for kind, phrases in _BARE:
            if _bare(rest, phrases):
                return Intent(kind)
    if m := _DESCRIPTION_PREFIX.match(body):
        return Intent(DESCRIPTION, m.group(1).strip(" .!?"))
    first = normalise(body).split()[:1]
    if body.endswith("?") or (first and first[0] in _QUESTION_WORDS):
        return Intent(QUESTION, body)
    return Intent(TEXT, body.strip())
