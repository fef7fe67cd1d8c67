"""A second process reserving paid generations (its own module: a spawned process imports
only this, not the test module with the agent and Dagster behind it)."""

from __future__ import annotations

from typing import Any

from adrag_app.access.spending import LimitReached, Spending


def reserve_many(root: str, user: str, limit: int, tries: int, start: Any, results: Any) -> None:
    """Wait for ``start``, try ``tries`` reservations of one, put how many were granted."""
    spending = Spending(root, per_user=limit)
    start.wait()
    granted = 0
    for _ in range(tries):
        try:
            spending.reserve(user, 1)
            granted += 1
        except LimitReached:
            pass
    results.put(granted)
