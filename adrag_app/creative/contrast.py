"""WCAG 2.1 contrast (SC 1.4.3) measured on rendered pixels."""

from __future__ import annotations

import numpy as np

NORMAL_TEXT = 4.5
LARGE_TEXT = 3.0
# WCAG's "large": 18 pt (24 px) regular or 14 pt (18.66 px) bold.
LARGE_PX = 24
LARGE_BOLD_PX = 18.66
# The share of background pixels allowed to be worse than the measured figure: a few stray
# pixels (fur, a glint) do not make text unreadable, a bright patch does.
WORST_PERCENTILE = 98


def _linear(channel: np.ndarray) -> np.ndarray:
    c = channel / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(rgb: np.ndarray | tuple[int, int, int]) -> np.ndarray:
    """WCAG relative luminance of RGB values (..., 3) in 0..255."""
    a = _linear(np.asarray(rgb, dtype=np.float64))
    return a[..., 0] * 0.2126 + a[..., 1] * 0.7152 + a[..., 2] * 0.0722


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    la, lb = float(luminance(a)), float(luminance(b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def required_ratio(font_px: float, bold: bool, strict: bool = False) -> float:
    """WCAG's minimum for text of this size; ``strict``: 4.5:1 whatever the size (adrag's
    own rule: an ad is read in a glance, on a small phone, often outdoors)."""
    if strict:
        return NORMAL_TEXT
    return LARGE_TEXT if font_px >= (LARGE_BOLD_PX if bold else LARGE_PX) else NORMAL_TEXT


def ratio_over(background: np.ndarray, color: tuple[int, int, int]) -> float:
    """Contrast of ``color`` against ``background`` pixels: the ratio that all but the worst
    2 % of them reach."""
    if background.size == 0:
        return 21.0
    lt = float(luminance(color))
    lb = luminance(background.reshape(-1, 3)[:, :3])
    ratios = (np.maximum(lb, lt) + 0.05) / (np.minimum(lb, lt) + 0.05)
    return float(np.percentile(ratios, 100 - WORST_PERCENTILE))
