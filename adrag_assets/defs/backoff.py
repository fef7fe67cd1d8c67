"""The one retry backoff of the sensors: how long to wait before asking again for work that
failed to happen."""

from __future__ import annotations


def doubling_backoff(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row: none before the first,
    ``base`` after it, doubling with each further one, at most ``cap``."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2 ** (failures - 1))
