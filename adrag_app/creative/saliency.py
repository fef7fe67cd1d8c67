"""Where the subject is: spectral-residual saliency (Hou & Zhang, CVPR 2007), no weights.

On a 64-pixel-wide grey copy: the log amplitude spectrum minus its local average is what is
unexpected in the image; transformed back, it lights up the animal rather than the lawn.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

WORK_WIDTH = 64
Box = tuple[int, int, int, int]


def saliency_map(image: Image.Image) -> np.ndarray:
    """A saliency map in 0..1 at ``WORK_WIDTH`` pixels wide."""
    w, h = image.size
    small = image.convert("L").resize(
        (WORK_WIDTH, max(8, round(WORK_WIDTH * h / w))), Image.Resampling.BILINEAR
    )
    grey = np.asarray(small, dtype=np.float64)
    spectrum = np.fft.fft2(grey)
    log_amp = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    kernel = np.ones((3, 3)) / 9
    padded = np.pad(log_amp, 1, mode="wrap")
    average = sum(
        padded[i : i + log_amp.shape[0], j : j + log_amp.shape[1]] * kernel[i, j]
        for i in range(3)
        for j in range(3)
    )
    residual = log_amp - average
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    blurred = Image.fromarray((sal / (sal.max() or 1) * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(2.5)
    )
    out = np.asarray(blurred, dtype=np.float64)
    # Photographers centre their subject: a mild centre prior breaks ties with busy edges.
    yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    cy, cx = (out.shape[0] - 1) / 2, (out.shape[1] - 1) / 2
    prior = np.exp(-(((yy - cy) / out.shape[0]) ** 2 + ((xx - cx) / out.shape[1]) ** 2) / 0.18)
    out = out * (0.5 + 0.5 * prior)
    return out / (out.max() or 1)


def subject_box(image: Image.Image, mass: float = 0.8) -> Box:
    """The box holding the central ``mass`` share of the saliency, in ``image`` pixels."""
    sal = saliency_map(image)
    # Only what stands out: below the mean is background.
    sal = np.where(sal > sal.mean(), sal, 0.0)
    total = sal.sum()
    w, h = image.size
    if total <= 0:
        return (w // 4, h // 4, w - w // 4, h - h // 4)
    lo, hi = (1 - mass) / 2, 1 - (1 - mass) / 2

    def span(profile: np.ndarray) -> tuple[float, float]:
        cum = np.cumsum(profile) / total
        return float(np.searchsorted(cum, lo)), float(np.searchsorted(cum, hi) + 1)

    x0, x1 = span(sal.sum(axis=0))
    y0, y1 = span(sal.sum(axis=1))
    sx, sy = w / sal.shape[1], h / sal.shape[0]
    return (
        max(0, int(x0 * sx)),
        max(0, int(y0 * sy)),
        min(w, int(np.ceil(x1 * sx))),
        min(h, int(np.ceil(y1 * sy))),
    )
