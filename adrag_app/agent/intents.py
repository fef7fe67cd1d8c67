"""What the marketer meant, read in the context of what is on screen.

The phase decides how a message is read:

* waiting for a segment: almost anything is the segment (a bare "ok" is not);
* with a proposal or a candidate photo on screen, a message that names no new subject is an
  *answer*: its polarity says yes or no ("looks right", "that's the one", "too dark",
  "hmm, not this one"); words like "back"/"previous" go back; "start over"/"another
  audience" restart;
* a message that names a pet or a scene (a breed, a species with an article, a scene word,
  from the planner's vocabulary) is a new description, whatever the phase;
* when the polarity is too weak to tell, the intent is :data:`UNCLEAR` and the agent asks a
  one-line question instead of guessing, and never searches for it.

Polarity is VADER's sentiment plus cue words with weights and negation (``language.json``,
data rather than phrase lists); rapidfuzz forgives typos ("prevous", "samoyd", "yse").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from rapidfuzz.distance import OSA

from adrag_app.planner.planner import (
    CAT_BREEDS,
    CAT_WORDS,
    DOG_BREEDS,
    DOG_WORDS,
    looks_like_segment,
    normalise,
)

YES = "yes"
NO = "no"  # also "next", "not quite", "another": show the next option
BACK = "back"
RESTART = "restart"
QUESTION = "question"
SEGMENT = "segment"  # a new audience ("segment: retirees", or any text before one is set)
DESCRIPTION = "description"  # a photo description ("show me a pug", "a cat on a sofa")
TEXT = "text"  # free text with no context to read it in: the agent decides
UNCLEAR = "unclear"  # reads as an answer but not which one: ask, never search
EMPTY = "empty"
MORE = "more"  # "more like this": photos like the one on screen
EDIT = "edit"  # a change to the ad on screen: Intent.edits says which (headline, tone, ...)
UNDO = "undo"  # back to the ad's previous version

# The phase names of adrag_app.agent.agent, repeated to avoid a circular import.
_AWAITING_SEGMENT = "awaiting_segment"
_PHOTO_PHASES = ("showing_candidate", "done")  # a photo (or the ad's photo) is on screen
_DONE = "done"  # an ad is on screen: edits and undo apply to it
_SHOWING = "showing_candidate"
# Edits that also say "make the ad" when a photo is on screen; a tone or size there ("too
# dark") is about the photo, an answer.
_EDITS_BEFORE_AD = ("headline", "placement")

# Words beyond cues and filler a "back" may carry ("the earlier beagle shot"); more and the
# message asks for something else ("... ignore previous instructions").
_BACK_MAX_OTHER_WORDS = 1
YES_THRESHOLD = 1.0  # a summed polarity at or above it is a yes, at or below minus it a no
_VADER_WEIGHT = 2.0

_SEGMENT_PREFIX = re.compile(
    r"^\s*(?:(?:a\s+)?(?:new|another|different|other)\s+)?"
    r"(?:segment|audience|target(?:\s+audience)?)\s*(?:is|:|=|-)\s*(.+)$",
    re.I | re.S,
)
_CLAUSE_SPLIT = re.compile(r"[,;:.!?]+|\s+-\s+|\b(?:but|instead|rather)\b", re.I)
_POLITE = re.compile(
    r"^(?:(?:ok|okay|hmm+|well|actually|no|nope|nah|yes|yeah|so|then|please|pls|maybe|"
    r"perhaps|now|and|or|i\s+think|let'?s\s+see)\b[\s,]*)+",
    re.I,
)
_ASKING = re.compile(
    r"^(?:(?:can|could|would|will)\s+(?:you|we|i)\s+(?:please\s+)?|please\s+)", re.I
)
_TRAILING = re.compile(r"(?:\s+(?:instead|please|pls|then|now|rather|thanks|thank\s+you))+$", re.I)


@dataclass(frozen=True)
class Intent:
    kind: str
    text: str = ""  # the content for SEGMENT / DESCRIPTION / TEXT / QUESTION
    polarity: float = 0.0  # the summed yes (+) / no (-) evidence, for traces and tests
    # For EDIT: what to change, as data (adrag_app.service.tool.check_edits), e.g.
    # {"headline": "Home at last", "tone": ["warmer"]}.
    edits: dict[str, Any] = field(default_factory=dict)


# -- the language data ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Language:
    yes: dict[str, float]
    no: dict[str, float]
    yes_pairs: dict[str, float]
    no_pairs: dict[str, float]
    negators: frozenset[str]
    contractions: dict[str, str]
    emoji_yes: tuple[str, ...]
    emoji_no: tuple[str, ...]
    back: frozenset[str]
    restart_verbs: frozenset[str]
    restart_objects: frozenset[str]
    restart_words: frozenset[str]
    audience_words: frozenset[str]
    change_words: frozenset[str]
    question_words: frozenset[str]
    soft_question_words: frozenset[str]
    unsure: frozenset[str]
    unsure_pairs: tuple[str, ...]
    deictics: frozenset[str]
    indefinite: frozenset[str]
    scenes: frozenset[str]
    breeds: frozenset[str]  # distinctive single words of breed names: "samoyed", "beagle"
    species: frozenset[str]
    prefixes: tuple[str, ...]  # normalised, longest first
    more_like: tuple[str, ...]  # normalised phrases asking for photos like the one shown
    common: frozenset[str]  # everyday words never "corrected" into a cue by the typo matcher


@cache
def language() -> _Language:
    data: dict[str, Any] = json.loads(
        resources.files("adrag_app.agent").joinpath("language.json").read_text("utf-8")
    )
    generic = set(data["generic_breed_words"])
    breeds = {w for b in DOG_BREEDS + CAT_BREEDS for w in b.split() if w not in generic}
    prefixes = sorted({normalise(p) for p in data["description_prefixes"]}, key=len, reverse=True)
    return _Language(
        yes={k: float(v) for k, v in data["yes"].items()},
        no={k: float(v) for k, v in data["no"].items()},
        yes_pairs={k: float(v) for k, v in data["yes_pairs"].items()},
        no_pairs={k: float(v) for k, v in data["no_pairs"].items()},
        negators=frozenset(data["negators"]),
        contractions=dict(data["contractions"]),
        emoji_yes=tuple(data["emoji_yes"]),
        emoji_no=tuple(data["emoji_no"]),
        back=frozenset(data["back"]),
        restart_verbs=frozenset(data["restart_verbs"]),
        restart_objects=frozenset(data["restart_objects"]),
        restart_words=frozenset(data["restart_words"]),
        audience_words=frozenset(data["audience_words"]),
        change_words=frozenset(data["change_words"]),
        question_words=frozenset(data["question_words"]),
        soft_question_words=frozenset(data["soft_question_words"]),
        unsure=frozenset(data["unsure"]),
        unsure_pairs=tuple(data["unsure_pairs"]),
        deictics=frozenset(data["deictics"]),
        indefinite=frozenset(data["indefinite"]),
        scenes=frozenset(data["scene_words"]),
        breeds=frozenset(breeds),
        species=frozenset(DOG_WORDS | CAT_WORDS),
        prefixes=tuple(prefixes),
        more_like=tuple(normalise(p) for p in data["more_like"]),
        common=frozenset(data["common_words"]),
    )


@cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@cache
def _known_words() -> frozenset[str]:
    lang = language()
    return frozenset(
        set(lang.yes) | set(lang.no) | lang.negators | lang.back | lang.scenes | lang.breeds
        | lang.species | lang.restart_verbs | lang.restart_objects | lang.audience_words
        | lang.change_words | lang.question_words | lang.soft_question_words | lang.deictics
        | lang.indefinite | lang.common
    )  # fmt: skip


_BREED_PHRASES = tuple(normalise(b) for b in DOG_BREEDS + CAT_BREEDS)


# -- words -------------------------------------------------------------------------------------


def _collapse(word: str) -> str:
    """Runs of a letter as one: "yesss" ~ "yes", "nooo" ~ "no", "pleeease" ~ "please"."""
    return re.sub(r"(.)\1+", r"\1", word)


def _words(text: str) -> list[str]:
    norm = f" {normalise(text)} "
    for contraction, word in language().contractions.items():
        norm = norm.replace(f" {contraction} ", f" {word} ")
    # "dont" etc. without the apostrophe arrive already joined.
    return norm.split()


def _fuzzy(word: str, vocab: frozenset[str] | set[str]) -> str | None:
    """``word`` if it is in ``vocab``, else the vocab word it is a typo of, else None."""
    if word in vocab:
        return word
    collapsed = _collapse(word)
    for v in vocab:
        if _collapse(v) == collapsed:
            return v
    if word in _known_words() or len(word) < 3:
        return None
    limit = 2 if len(word) >= 8 else 1
    for v in vocab:
        if abs(len(v) - len(word)) > limit or len(v) < 3:
            continue
        if len(word) <= 4 and (v[0] != word[0] or sorted(v) != sorted(word)):
            continue  # short words: only a swapped pair of letters ("yse", "nxet")
        if OSA.distance(word, v, score_cutoff=limit) <= limit:
            return v
    return None


def _has(words: list[str], vocab: frozenset[str]) -> bool:
    return any(_fuzzy(w, vocab) for w in words)


# -- what the message holds ----------------------------------------------------------------------


def polarity(message: str) -> float:
    """Yes (+) / no (-) evidence: weighted cue words with negation, emoji and VADER."""
    lang = language()
    score = 0.0
    for clause in _CLAUSE_SPLIT.split(message):
        score += _clause_polarity(_words(clause))
    score += 2.0 * sum(message.count(e) for e in lang.emoji_yes)
    score -= 2.0 * sum(message.count(e) for e in lang.emoji_no)
    score += _VADER_WEIGHT * float(_vader().polarity_scores(message)["compound"])
    return round(score, 3)


def _clause_polarity(words: list[str]) -> float:
    lang = language()
    cues = set(lang.yes) | set(lang.no)
    score = 0.0
    # A negator flips the cues in the next few words ("not good", "don't like it"); when it
    # flips nothing strong ("not this one", "that's not it") it counts as a no itself.
    pending, window, flipped = 0.0, 0, False

    def settle() -> None:
        nonlocal score, pending, window, flipped
        if pending and not flipped:
            score -= pending
        pending, window, flipped = 0.0, 0, False

    for i, word in enumerate(words):
        pair = f"{word} {words[i + 1]}" if i + 1 < len(words) else ""
        sign = -1.0 if window > 0 else 1.0
        score += sign * lang.yes_pairs.get(pair, 0.0) - lang.no_pairs.get(pair, 0.0)
        if word in lang.negators:
            settle()
            pending, window = lang.no.get(word, 1.5), 3
            continue
        cue = _fuzzy(word, cues)
        weight = (lang.yes.get(cue, 0.0) - lang.no.get(cue, 0.0)) if cue else 0.0
        if window > 0:
            weight = -weight
            flipped = flipped or abs(weight) >= 1.0
            window -= 1
        score += weight
        if window == 0 and pending:
            settle()
    settle()
    return score


def _strip_description(clause: str) -> str:
    text = " ".join(clause.split()).strip(" .!?")
    for _ in range(3):  # "ok, could you maybe show me ..." peels in a few rounds
        before = text
        text = _POLITE.sub("", text)
        text = _ASKING.sub("", text)
        low = normalise(text)
        for prefix in language().prefixes:
            if low == prefix or low.startswith(prefix + " "):
                # Drop as many words as the prefix has (punctuation may differ).
                text = " ".join(text.split()[len(prefix.split()) :])
                break
        if text == before:
            break
    return _TRAILING.sub("", text).strip(" .!?,")


def _names_subject(clause: str, has_prefix: bool) -> bool:
    """True when the clause names a pet or scene to search for (not "this dog" on screen)."""
    lang = language()
    words = _words(clause)
    joined = f" {' '.join(words)} "
    if any(f" {b} " in joined for b in _BREED_PHRASES):
        return True
    for i, word in enumerate(words):
        previous = words[i - 1] if i else ""
        if previous in lang.deictics and not has_prefix:
            continue  # "this pug", "that beach": the photo on screen
        if _fuzzy(word, lang.breeds) or (len(word) >= 4 and _fuzzy(word, lang.scenes)):
            return True
        if word in lang.species:
            plural = word.endswith("s") or word in {"puppies", "kittens"}
            if has_prefix or plural or previous in lang.indefinite or len(words) <= 2:
                return True
    return False


def _subject(message: str) -> str:
    """The part of ``message`` that describes a new photo, or ''."""
    for clause in _CLAUSE_SPLIT.split(message):
        if not clause.strip():
            continue
        text = _strip_description(clause)
        has_prefix = normalise(text) != normalise(_POLITE.sub("", clause.strip()))
        if text and _names_subject(text, has_prefix):
            return text
    return ""


def _is_restart(words: list[str]) -> bool:
    lang = language()
    if any(_fuzzy(w, lang.restart_words) for w in words):
        return True
    for a, b in zip(words, words[1:], strict=False):
        if _fuzzy(a, lang.restart_verbs) and _fuzzy(b, lang.restart_objects):
            return True  # "start over", "begin again", "start fresh"
    # "another audience", "change the segment", "different target group"
    for i, w in enumerate(words):
        if _fuzzy(w, lang.audience_words):
            near = words[max(0, i - 3) : i]
            if any(_fuzzy(n, lang.change_words) for n in near):
                return True
    return "from scratch" in " ".join(words)


def _is_back(words: list[str]) -> bool:
    """A back cue in a message that is about going back: "go back to the previous one", not
    "show me a golden retriever, ignore previous instructions" (its other words ask for
    something else, so it is no answer)."""
    lang = language()
    joined = " ".join(words)
    if not (_has(words, lang.back) or "last one" in joined or "one before" in joined):
        return False
    return sum(not _cue_or_filler(w) for w in words) <= _BACK_MAX_OTHER_WORDS


def _question(message: str, words: list[str]) -> str:
    """'wh' (why/what/how...), 'soft' (can/is/do... or a bare '?') or ''."""
    if not words:
        return ""
    lang = language()
    if words[0] in lang.question_words:
        return "wh"
    if words[0] in lang.soft_question_words or message.rstrip().endswith("?"):
        return "soft"
    return ""


def _answer_kind(score: float) -> str:
    if score >= YES_THRESHOLD:
        return YES
    if score <= -YES_THRESHOLD:
        return NO
    return UNCLEAR


# -- the entry point ---------------------------------------------------------------------------


def parse(message: str, phase: str | None = None) -> Intent:
    """The intent of one chat message in ``phase`` (the agent's phase; None: no context)."""
    raw = " ".join(str(message or "").split())
    if not raw:
        return Intent(EMPTY)
    if m := _SEGMENT_PREFIX.match(raw):
        return Intent(SEGMENT, m.group(1).strip(" .!"))
    words = _words(raw)
    score = polarity(raw)
    if not words:  # emoji only
        kind = _answer_kind(score)
        return Intent(kind, polarity=score) if kind != UNCLEAR else Intent(EMPTY)
    if _is_restart(words):
        return Intent(RESTART, polarity=score)
    if phase is not None and (switched := segment_switch(raw)):
        return Intent(SEGMENT, switched, score)  # "now another ad, this time for retirees"
    if phase == _DONE:
        if _is_undo(raw):
            return Intent(UNDO, polarity=score)
        if edits := parse_edits(raw):
            return Intent(EDIT, raw, score, edits)
    if phase == _SHOWING and score > -YES_THRESHOLD and (edits := _making_edits(raw)):
        return Intent(EDIT, raw, score, edits)  # "yes, with the headline 'Home at last'"
    question = _question(raw, words)
    subject = _subject(raw)
    if phase in _PHOTO_PHASES and not subject and _is_more_like(raw):
        return Intent(MORE, polarity=score)  # before yes/no: "like" is a yes word

    if phase == _AWAITING_SEGMENT:
        if question == "wh" and not subject:
            return Intent(QUESTION, raw, score)
        if subject and normalise(subject) != normalise(raw):
            return Intent(DESCRIPTION, subject, score)  # "show me a pug": no segment needed
        content = [w for w in words if not _cue_or_filler(w)]
        if not content:  # "ok", "yes please", "back": an answer, not a segment name
            kind = BACK if _is_back(words) else _answer_kind(score)
            return Intent(kind if kind != UNCLEAR else EMPTY, polarity=score)
        return Intent(SEGMENT, _TRAILING.sub("", raw).strip(" .!?"), score)

    if subject:
        if question == "wh" and not _starts_with_prefix(raw):
            return Intent(QUESTION, raw, score)  # "why a pug?"
        return Intent(DESCRIPTION, subject, score)
    if question == "wh" and not _starts_with_prefix(raw):
        return Intent(QUESTION, raw, score)
    if _is_back(words):
        return Intent(BACK, polarity=score)
    strong = abs(score) >= 3 * YES_THRESHOLD  # "great, go ahead and generate it"
    if not strong and any(not _cue_or_filler(w) for w in words):
        segment = _segment_in(raw)  # only words beyond an answer's can name an audience
        if segment:
            return Intent(SEGMENT, segment, score)
    if _is_unsure(words):
        return Intent(UNCLEAR, raw, score)
    kind = _answer_kind(score)
    if question == "soft" and abs(score) < 2 * YES_THRESHOLD:
        return Intent(QUESTION, raw, score)  # "is this the best one?": answer it, change nothing
    if kind == UNCLEAR and phase is None:
        return Intent(TEXT, raw, score)
    return Intent(kind, raw if kind == UNCLEAR else "", score)


def _is_more_like(message: str) -> bool:
    text = f" {normalise(message)} "
    return any(f" {p} " in text for p in language().more_like)


def _is_unsure(words: list[str]) -> bool:
    lang = language()
    joined = f" {' '.join(words)} "
    return any(w in lang.unsure for w in words) or any(
        f" {p} " in joined for p in lang.unsure_pairs
    )


def _cue_or_filler(word: str) -> bool:
    lang = language()
    return bool(
        _fuzzy(word, set(lang.yes) | set(lang.no) | lang.negators | lang.back | lang.unsure)
        or word in lang.common
        or word in lang.deictics
        or word in lang.question_words
    )


def _starts_with_prefix(message: str) -> bool:
    low = normalise(_ASKING.sub("", _POLITE.sub("", message.strip())))
    return any(low == p or low.startswith(p + " ") for p in language().prefixes)


def _segment_in(message: str) -> str:
    """A curated audience named in an answer-phase message ("families with kids instead")."""
    for clause in _CLAUSE_SPLIT.split(message):
        text = _strip_description(clause)
        text = re.sub(r"^(?:for|to|target(?:ing)?|aim\s+at)\s+", "", text, flags=re.I)
        content = [w for w in _words(text) if not _cue_or_filler(w)]
        if content and looks_like_segment(text):
            return text
    return ""


# -- edits to the ad on screen -------------------------------------------------------------------
# Kept apart from the answer reading above: an edit is data for the tool's ``edit_ad``, read
# only once an ad exists (and a segment switch, at any point after the first segment).


@cache
def _edit_language() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("adrag_app.agent").joinpath("language.json").read_text("utf-8")
    )["edits"]
    return data


def _phrase_pattern(phrase: str) -> str:
    """A normalised phrase as a regex over raw text: words apart by spaces or punctuation."""
    return r"\b" + r"[\s\W]*".join(re.escape(w) for w in phrase.split()) + r"\b"


def _found(norm: str, phrases: list[str]) -> list[tuple[int, str]]:
    """(position, phrase) of each phrase in ``norm`` (normalised, space-padded), longest
    first, each stretch of text used once."""
    hits = []
    taken: list[tuple[int, int]] = []
    for phrase in sorted(phrases, key=len, reverse=True):
        start = norm.find(f" {phrase} ")
        while start >= 0:
            end = start + len(phrase) + 1
            if not any(a < end and start < b for a, b in taken):
                hits.append((start, phrase))
                taken.append((start, end))
            start = norm.find(f" {phrase} ", end - 1)
    return sorted(hits)


_QUOTED = re.compile(
    r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d|\u2018([^\u2019]+)\u2019|(?<![A-Za-z])'([^']+)'(?![A-Za-z])"
)
_NEXT_EDIT = re.compile(
    r"\s*(?:(?:,|;|\band\b|\bthen\b)\s*(?:also\s+)?(?:please\s+)?"
    r"(?=(?:make|move|put|change|set|add|use|turn|place|do|get|try|give|shift|can|could)\b)"
    r"|[.;!]\s+(?=(?:also|and|then|plus|oh|but)\b))",
    re.I,
)


def _headline(message: str) -> tuple[str, str]:
    """(the message without the headline part, the headline) when the message gives the
    ad's words ("add the headline 'Home at last'", "headline: Home at last", "change the
    headline to Home at last"); (message, "") otherwise."""
    lang = _edit_language()
    words = "|".join(re.escape(w) for w in lang["headline_words"])
    named = re.search(rf"\b(?:{words})s?\b", message, re.I)
    if not named:
        return message, ""
    quoted = _QUOTED.search(message)
    if quoted:
        text = next(g for g in quoted.groups() if g is not None)
        rest = message[: quoted.start()] + " " + message[quoted.end() :]
        return rest, " ".join(text.split())
    after = message[named.end() :]
    leads = sorted(lang["headline_lead"], key=len, reverse=True)
    lead = re.match(
        r"\s*(?:[:=\-]|" + "|".join(_phrase_pattern(p) for p in leads) + r")\s*:?", after, re.I
    )
    before = normalise(message[: named.start()]).split()[-4:]
    asked = any(w in lang["headline_verbs"] for w in before)
    if not lead and not asked:
        return message, ""  # "why is the headline so long?": about the headline, not one
    text = after[lead.end() :] if lead else after
    cut = _NEXT_EDIT.search(text)
    rest = message[: named.start()] + " " + (text[cut.start() :] if cut else "")
    text = text[: cut.start()] if cut else text
    text = re.sub(r"(?:\s+(?:please|pls|thanks|thank you))+$", "", text.strip(), flags=re.I)
    text = " ".join(text.strip(" .!?,;:\"'\u201c\u201d\u2018\u2019").split())
    return (rest, text) if text else (message, "")


def _placements(norm: str) -> list[str]:
    lang = _edit_language()
    table = {k: v for k, v in lang["placements"].items() if not k.startswith("_")}
    by_phrase = {normalise(p): name for name, phrases in table.items() for p in phrases}
    hits = _found(norm, list(by_phrase))
    if not hits:
        return []
    words = norm.split()
    if len(words) > 4 and not set(words) & set(lang["placement_cues"]):
        return []  # a long message merely mentioning "feed" or "display" is not about sizes
    groups = lang["placement_groups"]
    names: list[str] = []
    for _, phrase in hits:
        name = by_phrase[phrase]
        names += groups.get(name, [name])
    return list(dict.fromkeys(names))


def _product(norm: str) -> dict[str, Any]:
    lang = _edit_language()
    if not _found(norm, [normalise(w) for w in lang["product_words"]]):
        return {}
    out: dict[str, Any] = {}
    for position, phrases in lang["positions"].items():
        pattern = "|".join(re.escape(normalise(p)) for p in sorted(phrases, key=len, reverse=True))
        if re.search(
            rf" (?:to|on|in|at|into|towards|onto) (?:the )?(?:very )?(?:{pattern}) ", norm
        ):
            out["position"] = position
            break
    for scale, phrases in lang["scale"].items():
        if _found(norm, [normalise(p) for p in phrases]):
            out["scale"] = float(scale)
            break
    return out


def parse_edits(message: str) -> dict[str, Any]:
    """The changes to the ad a message asks for, as data (``{}`` for none): ``headline``
    (its words), ``tone`` (a list of warmer / cooler / brighter / darker), ``product``
    (``position`` and/or ``scale``), ``placement`` (a list of names), ``variant`` (1).
    Several in one message are all kept ("make it warmer and add the headline 'Home at
    last'")."""
    lang = _edit_language()
    rest, headline = _headline(" ".join(str(message or "").split()))
    edits: dict[str, Any] = {}
    if headline:
        edits["headline"] = headline
    norm = f" {normalise(rest)} "
    tone_of = {normalise(p): t for t, phrases in lang["tone"].items() for p in phrases}
    tones = [tone_of[p] for _, p in _found(norm, list(tone_of))]
    if tones:
        edits["tone"] = list(dict.fromkeys(tones))
    if product := _product(norm):
        edits["product"] = product
    if _found(norm, [normalise(p) for p in lang["variant"]]):
        edits["variant"] = 1
    elif placements := _placements(norm):
        edits["placement"] = placements
    return edits


def _making_edits(message: str) -> dict[str, Any]:
    edits = parse_edits(message)
    return {k: v for k, v in edits.items() if k in _EDITS_BEFORE_AD} if edits else {}


def _is_undo(message: str) -> bool:
    norm = f" {normalise(message)} "
    return bool(_found(norm, [normalise(p) for p in _edit_language()["undo"]]))


def segment_switch(message: str) -> str:
    """The new audience of "now another ad, this time for retirees who love small dogs",
    "same for students", "now an ad for cat lovers"; '' when the message does not switch
    (or switches to a placement: "now for Google")."""
    lang = _edit_language()
    best = None
    for phrase in sorted(lang["segment_switch"], key=len, reverse=True):
        match = re.search(_phrase_pattern(normalise(phrase)), message, re.I)
        if match and (best is None or match.start() < best.start()):
            best = match
    if best is None:
        return ""
    text = _TRAILING.sub("", message[best.end() :].strip(" .!?,:;")).strip(" .!?,:;")
    norm = normalise(text)
    if not norm or norm.split()[0] in {"a", "an"}:
        return ""  # "now one for a cat by the window": a description, not an audience
    if _placements(f" {norm} ") and len(norm.split()) <= 3:
        return ""
    return text
