"""The product as a cut-out: its own transparency, or a uniform background removed."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageFilter

# A border this even (mean absolute deviation per channel, 0..255) is a studio background.
UNIFORM_BORDER = 12
TOLERANCE = 38


def cut_out(product: Image.Image) -> Image.Image:
    """RGBA cropped to the product: a PNG's own alpha when it has one, else the colour of a
    uniform border (a white or grey studio backdrop) made transparent with a soft edge."""
    rgba = product.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"))
    if alpha.min() < 250:
        bbox = rgba.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
        return rgba.crop(bbox) if bbox else rgba
    rgb = np.asarray(rgba.convert("RGB"), dtype=np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    if np.abs(border - background).mean() > UNIFORM_BORDER:
        return rgba  # a real photo of the product: used as it is
    distance = np.abs(rgb - background).sum(axis=2)
    ramp = np.clip((distance - TOLERANCE / 2) * (255 / TOLERANCE), 0, 255).astype(np.uint8)
    mask = Image.fromarray(ramp).filter(ImageFilter.MedianFilter(3))
    rgba.putalpha(ImageChops.multiply(mask, rgba.getchannel("A")))
    bbox = mask.point(lambda a: 255 if a > 8 else 0).getbbox()
    return rgba.crop(bbox) if bbox else rgba


def with_shadow(product: Image.Image, unit: int) -> tuple[Image.Image, tuple[int, int]]:
    """The product over its soft shadow, and where the product sits inside that image."""
    blur = max(2, round(unit * 0.018))
    dx, dy = round(unit * 0.006), round(unit * 0.014)
    pad = blur * 3
    w, h = product.size
    out = Image.new("RGBA", (w + 2 * pad + dx, h + 2 * pad + dy), (0, 0, 0, 0))
    shade = product.getchannel("A").point(lambda a: round(a * 0.5))
    shadow = Image.new("RGBA", product.size, (0, 0, 0, 255))
    shadow.putalpha(shade)
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    layer.alpha_composite(shadow, (pad + dx, pad + dy))
    out.alpha_composite(layer.filter(ImageFilter.GaussianBlur(blur)))
    out.alpha_composite(product, (pad, pad))
    return out, (pad, pad)
