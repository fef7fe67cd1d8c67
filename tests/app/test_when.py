"""The agent's date phrases ("from last summer", "taken in 2024", "in March") as ranges,
relative to a fixed today; the words come from adrag_app/agent/when.json."""

from __future__ import annotations

from datetime import date

import pytest

from adrag_app.agent.when import find_when, only_filler
from adrag_assets.images.taken import TakenRange

DEC = date(2026, 12, 6)


@pytest.mark.parametrize(
    ("text", "today", "after", "before", "rest"),
    [
        ("families with young children, photos from last summer", DEC, "2026-06-01",
         "2026-09-01", "families with young children"),
        # In July, last summer is last year's; this summer has begun.
        ("a beagle from last summer", date(2026, 7, 10), "2025-06-01", "2025-09-01", "a beagle"),
        ("this summer", date(2026, 7, 10), "2026-06-01", "2026-09-01", ""),
        ("a pug taken in 2024", DEC, "2024-01-01", "2025-01-01", "a pug"),
        # A month alone is the latest one begun; winter spans the new year.
        ("only photos in March", date(2026, 2, 10), "2025-03-01", "2025-04-01", "only"),
        ("in March 2023", DEC, "2023-03-01", "2023-04-01", ""),
        ("last winter", date(2026, 2, 10), "2024-12-01", "2025-03-01", ""),
        ("in the fall of 2023", DEC, "2023-09-01", "2023-12-01", ""),
        ("last month", DEC, "2026-11-01", "2026-12-01", ""),
        ("a cat from last year", DEC, "2025-01-01", "2026-01-01", "a cat"),
        ("photos since 2023", DEC, "2023-01-01", None, "photos"),
        ("before 2020", DEC, None, "2020-01-01", ""),
    ],
)  # fmt: skip
def test_phrases_become_ranges(text, today, after, before, rest):
    when = find_when(text, today)
    assert when is not None and when.rest == rest
    want = {k: v for k, v in (("taken_after", after), ("taken_before", before)) if v}
    assert when.taken.as_filters() == want


def test_no_date_no_range_and_any_time_drops_it():
    assert find_when("a puppy in a park", DEC) is None
    assert find_when("a beagle sniffing along a garden path", DEC) is None
    cleared = find_when("any time please", DEC)
    assert cleared.taken is None and only_filler(cleared.rest)
    assert only_filler("only the photos") and not only_filler("a beagle")


def test_a_range_is_shown_back_with_its_last_day():
    summer = find_when("from last summer", DEC).taken
    assert summer.describe() == "taken 1 Jun 2026 – 31 Aug 2026 (last summer)"
    with pytest.raises(ValueError, match="on or after the day it ends"):
        TakenRange(date(2024, 2, 1), date(2024, 1, 1))
    assert TakenRange.from_filters({"species": "dog"}) == (None, {"species": "dog"})


def test_a_scene_or_a_quotation_is_not_a_date():
    # A season after a plain "in" is a scene; after "from" / "taken in" it is a date.
    assert find_when("a husky with a thick coat in winter", DEC) is None
    # The latest winter begun: on 6 December, this one.
    assert find_when("a husky from the winter", DEC).taken.as_filters() == {
        "taken_after": "2026-12-01", "taken_before": "2027-03-01"}  # fmt: skip
    assert find_when("add the headline 'Fun in March 2024'", DEC) is None
    # An apostrophe is no quotation: the date after it is read.
    assert find_when("someone's dog from 2024", DEC).rest == "someone's dog"
