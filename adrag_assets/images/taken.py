"""When a photo was taken: a date range a search is narrowed to, and the photos in it.

``images.taken_at`` is the camera's own clock (EXIF, no time zone), so a range is made of
calendar days compared as the camera wrote them: ``after`` is the first day in the range,
``before`` the first day after it ("taken in 2024": 2024-01-01 up to 2025-01-01). A photo
without an EXIF date is in no range.

The range is looked up in the ``images`` Delta table, not in Milvus: the collections hold
no date field, and giving them one would be a schema change of every encoder's collection
(README, "When a photo was taken"). The ids found narrow the search inside Milvus, so the
top-k is still k photos of that range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from adrag_assets.tables import Tables

# The keys a range travels under among a search's filters (the agent's proposal, the tool's
# context, an ad's sidecar): ISO days. Label names cannot collide with them (see milvus_filter).
TAKEN_AFTER, TAKEN_BEFORE = "taken_after", "taken_before"


@dataclass(frozen=True)
class TakenRange:
    """Photos taken on or after ``after`` and before ``before`` (either may be open)."""

    after: date | None = None
    before: date | None = None
    phrase: str = ""  # how the marketer said it ("last summer"), shown back to them

    def __post_init__(self) -> None:
        if self.after is None and self.before is None:
            raise ValueError("a date range needs a start or an end")
        if self.after and self.before and self.after >= self.before:
            raise ValueError(
                f"the range starts ({self.after.isoformat()}) on or after the day it ends "
                f"before ({self.before.isoformat()})"
            )

    def as_filters(self) -> dict[str, str]:
        out = {}
        if self.after:
            out[TAKEN_AFTER] = self.after.isoformat()
        if self.before:
            out[TAKEN_BEFORE] = self.before.isoformat()
        return out

    def describe(self) -> str:
        """In words, last day included: "taken 1 Jun 2025 – 31 Aug 2025"."""
        if self.after and self.before:
            text = f"taken {_day(self.after)} – {_day(self.before - timedelta(days=1))}"
        elif self.after:
            text = f"taken on or after {_day(self.after)}"
        else:
            text = f"taken before {_day(self.before)}"
        return f"{text} ({self.phrase})" if self.phrase else text

    @classmethod
    def from_filters(
        cls, filters: Mapping[str, str] | None
    ) -> tuple[TakenRange | None, dict[str, str]]:
        """The range carried in ``filters`` (None without one) and the label filters left."""
        rest = dict(filters or {})
        after, before = rest.pop(TAKEN_AFTER, None), rest.pop(TAKEN_BEFORE, None)
        if after is None and before is None:
            return None, rest
        return cls(_parse_day(TAKEN_AFTER, after), _parse_day(TAKEN_BEFORE, before)), rest


def _day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _parse_day(key: str, value: object) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{key} must be a day as YYYY-MM-DD, got {value!r}") from None


def ids_taken(tables: Tables, taken: TakenRange) -> list[str]:
    """The ids of the photos whose EXIF date falls in ``taken``, sorted."""
    if not tables.exists("images"):
        return []
    if "taken_at" not in tables.open("images").schema().to_arrow().names:
        return []  # a table from before EXIF dates were kept: no photo has one yet
    where = []
    if taken.after:
        where.append(f"taken_at >= TIMESTAMP '{taken.after.isoformat()} 00:00:00'")
    if taken.before:
        where.append(f"taken_at < TIMESTAMP '{taken.before.isoformat()} 00:00:00'")
    rows = tables.read("images", ["image_id"], " AND ".join(where))
    return sorted(set(rows.column("image_id").to_pylist()))
