"""Dates in what the marketer says: "from last summer", "taken in 2024", "in March".

A small table-driven reader (no date-parsing library is installed): the phrases, their words
and the seasons are data (``when.json``); this module turns a match into a
:class:`~adrag_assets.images.taken.TakenRange` relative to today, and gives back the text
without the phrase (what is left is a description, a segment, or nothing).

Which year: a month or season alone ("in March", "from the summer") or with "this" is the
latest one that has begun; with "last" it is the latest one that has ended ("last summer"
in December is this year's, in July last year's). "Last year" / "last month" are the
calendar year / month before the current one.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from adrag_assets.images.taken import TakenRange

# A quotation, not an apostrophe ("someone's lap"): the quote opens after no letter.
_QUOTED = re.compile(r"(?<!\w)(?:'[^']*'|\"[^\"]*\"|“[^”]*”|‘[^’]*’)")


@dataclass(frozen=True)
class When:
    taken: TakenRange | None  # None: "any time", the range is dropped
    rest: str  # the message without the phrase, tidied


@functools.cache
def _table() -> dict[str, Any]:
    return json.loads(resources.files("adrag_app.agent").joinpath("when.json").read_text("utf-8"))


def _alternatives(words: Any) -> str:
    # Longest first, so "taken in" is tried before "taken".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@functools.cache
def _patterns() -> list[re.Pattern[str]]:
    t = _table()
    slots = {
        "lead": f"(?:{_alternatives(t['lead'])})",
        "strong": f"(?:{_alternatives(t['strong'])})",
        "relative": f"(?P<relative>{_alternatives(t['relative'])})",
        "season": f"(?P<season>{_alternatives(t['seasons'])})",
        "month": f"(?P<month>{_alternatives(t['months'])})",
        "unit": f"(?P<unit>{_alternatives(t['unit'])})",
        "year": r"(?P<year>(?:19|20)\d\d)",
        "since": f"(?P<since>{_alternatives(t['since'])})",
        "until": f"(?P<until>{_alternatives(t['until'])})",
    }
    out = []
    for phrase in t["phrases"]:
        body = r"\s+".join(
            re.sub(r"\{(\w+)\}", lambda m: slots[m.group(1)], part) for part in phrase.split()
        )
        out.append(re.compile(rf"(?<![\w-])(?P<phrase>{body})(?![\w-])", re.IGNORECASE))
    return out


def _add_months(d: date, n: int) -> date:
    months = d.year * 12 + d.month - 1 + n
    return date(months // 12, months % 12 + 1, 1)


def _latest(starts: list[int], length: int, today: date, ended: bool) -> tuple[date, date]:
    """The latest period of ``length`` months starting in one of ``starts`` that has ended
    (or begun) by ``today``."""
    found = [
        (start, _add_months(start, length))
        for year in range(today.year - 2, today.year + 1)
        for month in starts
        for start in [date(year, month, 1)]
    ]
    return max(p for p in found if (p[1] <= today if ended else p[0] <= today))


def find_when(text: str, today: date | None = None) -> When | None:
    """The first date phrase in ``text`` as a range, or None when there is none."""
    today = today or date.today()
    t = _table()
    # Quoted text ("add the headline 'Fun in the summer'") is the marketer's words, not a date:
    # searched with its quotes blanked out, so positions still match ``text``.
    scanned = _QUOTED.sub(lambda m: " " * len(m.group()), text)
    clear = re.search(
        rf"(?<![\w-])(?:{_alternatives(t['clear'])})(?![\w-])", scanned, re.IGNORECASE
    )
    if clear:
        return When(None, _without(text, clear.start(), clear.end()))
    for pattern in _patterns():
        m = pattern.search(scanned)
        if m is None:
            continue
        g = dict.fromkeys(("relative", "season", "month", "unit", "year", "since", "until"))
        g.update({k: v.lower() for k, v in m.groupdict().items() if v})
        year = int(g["year"]) if g["year"] else None
        ended = t["relative"].get(g["relative"] or "this") == "ended"
        if g["since"]:
            after, before = date(year + t["since"][g["since"]], 1, 1), None
        elif g["until"]:
            after, before = None, date(year + t["until"][g["until"]], 1, 1)
        elif g["season"] or g["month"]:
            first, length = (
                t["seasons"][g["season"]] if g["season"] else (t["months"][g["month"]], 1)
            )
            if year is not None:
                after = date(year, first, 1)
                before = _add_months(after, length)
            else:
                after, before = _latest([first], length, today, ended)
        elif g["unit"]:
            length = t["unit"][g["unit"]]
            after, before = _latest(list(range(1, 13, length)), length, today, ended)
        else:
            after, before = date(year, 1, 1), date(year + 1, 1, 1)
        said = m.group("phrase")
        # Shown back without its lead: "(last summer)", not "(from last summer)".
        lead = re.match(f"(?:{_alternatives(t['lead'])})\\s+", said, re.IGNORECASE)
        shown = said[lead.end() :] if lead else said
        return When(TakenRange(after, before, shown), _without(text, m.start(), m.end()))
    return None


def _without(text: str, start: int, end: int) -> str:
    """``text`` without ``text[start:end]``, tidied."""
    words = (text[:start] + " " + text[end:]).split()
    # "families with young children, photos from last summer": the dangling "photos" goes.
    while len(words) > 1 and words[-1].strip(",;.").lower() in _table()["filler"]:
        words.pop()
    return " ".join(words).strip(" ,;")


def only_filler(text: str) -> bool:
    """Whether ``text`` says nothing beyond "only photos" (once the date phrase is gone)."""
    words = re.findall(r"[a-z]+", text.lower())
    return all(w in _table()["filler"] for w in words)
