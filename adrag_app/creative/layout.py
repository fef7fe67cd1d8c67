"""One creative for one placement: the photo as the hero, the product beside the subject, the
text layer inside the safe zone at a contrast that passes WCAG, measured on the pixels.

Pure: images and data in, an image and its boxes out. The same text layer is drawn over the
local composite and over an image model's picture (``product=None``: the model placed it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from adrag_app.creative.brandkit import RGB, BrandKit
from adrag_app.creative.contrast import contrast_ratio, ratio_over, required_ratio
from adrag_app.creative.placements import Placement
from adrag_app.creative.product import with_shadow
from adrag_app.creative.saliency import subject_box

Box = tuple[int, int, int, int]
POSITIONS = ("auto", "top-left", "top-right", "bottom-left", "bottom-right", "left", "right")
PRODUCT_SHARE = 0.34  # the product's height, as a share of the frame's shorter side
MAX_HEADLINE_LINES = 3
# Scrim strengths tried in turn until every text block passes (1.0 = a solid panel, which
# always passes with black or white text).
SCRIM_STEPS = (0.0, 0.45, 0.6, 0.75, 0.9, 1.0)
GRAPHIC_RATIO = 3.0
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (17, 17, 17)


@dataclass(frozen=True)
class Look:
    """The edits a marketer can ask for; a version is rendered from exactly these."""

    warmth: float = 0.0  # -1 (cooler) .. 1 (warmer)
    brightness: float = 0.0  # -1 .. 1
    product_position: str = "auto"
    product_scale: float = 1.0  # 0.5 .. 1.6

    def __post_init__(self) -> None:
        if self.product_position not in POSITIONS:
            raise ValueError(
                f"product position {self.product_position!r}: use one of {', '.join(POSITIONS)}"
            )
        for name, lo, hi in (("warmth", -1, 1), ("brightness", -1, 1), ("product_scale", 0.5, 1.6)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TextBox:
    role: str  # headline, cta, brand
    text: str
    box: Box
    contrast: float
    required: float
    color: RGB
    font_px: int
    origin: tuple[int, int]
    lines: list[str] = field(default_factory=list)
    spacing: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        d["color"] = "#{:02x}{:02x}{:02x}".format(*self.color)
        d["origin"] = list(self.origin)
        d["contrast"] = round(self.contrast, 2)
        return d


@dataclass
class Rendered:
    image: Image.Image
    text_boxes: list[TextBox]
    product_box: Box | None
    subject_box: Box
    logo_box: Box | None
    safe_ok: bool
    problems: list[str]


def adjust(photo: Image.Image, look: Look) -> Image.Image:
    """Warmer/cooler (red up, blue down) and brighter/darker."""
    out = photo.convert("RGB")
    if look.warmth:
        r, g, b = out.split()
        k = 0.1 * look.warmth
        r = r.point(lambda v: min(255, round(v * (1 + k))))
        b = b.point(lambda v: min(255, round(v * (1 - k))))
        out = Image.merge("RGB", (r, g, b))
    if look.brightness:
        out = ImageEnhance.Brightness(out).enhance(1 + 0.25 * look.brightness)
    return out


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def overlap(a: Box, b: Box) -> int:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def inside(inner: Box, outer: Box) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def hero(
    photo: Image.Image,
    subject: Box,
    size: tuple[int, int],
    fill: RGB = (31, 58, 95),
    pad: float = 0.06,
) -> tuple[Image.Image, Box]:
    """The photo filling ``size``, cropped so the (padded) subject stays whole; where a crop
    would cut it, the whole photo on a panel of ``fill``. Returns the image and the
    subject's box in it."""
    W, H = size
    w, h = photo.size
    aspect = W / H
    sx0, sy0, sx1, sy1 = subject
    px, py = (sx1 - sx0) * pad, (sy1 - sy0) * pad
    sx0, sy0, sx1, sy1 = sx0 - px, sy0 - py, sx1 + px, sy1 + py
    # The largest window of the target shape inside the photo, grown if the subject is bigger.
    cw, ch = (h * aspect, h) if w / h > aspect else (w, w / aspect)
    need_w = max(sx1 - sx0, (sy1 - sy0) * aspect)
    # A subject a little wider than the frame loses an edge (a tail, an ear tip) rather than
    # the ad getting blurred borders.
    fit_w = cw
    if need_w > cw * 1.15:
        cw, ch = need_w, need_w / aspect
    cx, cy = (sx0 + sx1) / 2, (sy0 + sy1) / 2

    def place(centre: float, length: float, total: float) -> float:
        if length >= total:
            return (total - length) / 2
        return min(max(centre - length / 2, 0.0), total - length)

    x0, y0 = place(cx, cw, w), place(cy, ch, h)
    scale = W / cw
    if x0 >= 0 and y0 >= 0 and x0 + cw <= w + 0.5 and y0 + ch <= h + 0.5:
        canvas = photo.resize(size, Image.Resampling.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch))
    else:
        # The subject would be cut: the whole photo across the frame, a panel of the brand's
        # colour beside it (where the text goes), joined by a soft seam.
        canvas = Image.new("RGB", size, fill)
        if w / h > aspect:
            # As wide a crop as the subject needs (not the whole photo): the photo stays big.
            crop_w = min(float(w), max(sx1 - sx0, fit_w))
            x0 = place(cx, crop_w, w)
            scale = W / crop_w
            ph = round(h * scale)
            canvas.paste(
                photo.resize((W, ph), Image.Resampling.LANCZOS, box=(x0, 0, x0 + crop_w, h)),
                (0, 0),
            )
            seam = max(1, round(H * 0.06))
            ramp = np.linspace(0, 255, seam)[:, None].repeat(W, axis=1).astype(np.uint8)
            canvas.paste(Image.new("RGB", (W, seam), fill), (0, ph - seam), Image.fromarray(ramp))
        else:
            scale = H / h
            pw = round(w * scale)
            canvas.paste(photo.resize((pw, H), Image.Resampling.LANCZOS), (W - pw, 0))
            seam = max(1, round(W * 0.06))
            ramp = np.linspace(255, 0, seam)[None, :].repeat(H, axis=0).astype(np.uint8)
            canvas.paste(Image.new("RGB", (seam, H), fill), (W - pw, 0), Image.fromarray(ramp))
            x0 = -(W - pw) / scale
        y0 = 0.0
    sub = (
        max(0, round((subject[0] - x0) * scale)),
        max(0, round((subject[1] - y0) * scale)),
        min(W, round((subject[2] - x0) * scale)),
        min(H, round((subject[3] - y0) * scale)),
    )
    return canvas.convert("RGB"), sub


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(trial) <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def _fit_headline(
    kit: BrandKit, text: str, width: float, max_height: float, start_px: int
) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    px = start_px
    while True:
        font = kit.font(px)
        lines = _wrap(text, font, width)
        spacing = round(px * 0.18)
        height = len(lines) * px * 1.17 + (len(lines) - 1) * spacing
        fits = all(font.getlength(line) <= width for line in lines)
        if (len(lines) <= MAX_HEADLINE_LINES and height <= max_height and fits) or px <= 20:
            return font, lines, spacing
        px = round(px * 0.92)


def text_mask(
    size: tuple[int, int],
    lines: list[str],
    origin: tuple[int, int],
    font: ImageFont.FreeTypeFont,
    spacing: int,
) -> Image.Image:
    """The glyphs of a text block as an L mask of the frame's size."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).multiline_text(
        origin, "\n".join(lines), font=font, fill=255, spacing=spacing
    )
    return mask


def contrast_under(image: Image.Image, box: Box, color: RGB, mask: Image.Image) -> float:
    """Contrast of ``color`` against the pixels of ``box`` that are neither glyph nor the
    glyphs' anti-aliased edge."""
    return ratio_over(np.asarray(image.crop(box).convert("RGB"))[~_edges(mask, box)], color)


def _logo_contrast(image: Image.Image, logo: Image.Image, box: Box) -> float:
    """The logo's main colour (its opaque pixels' median) against the pixels around it."""
    pixels = np.asarray(logo.convert("RGBA"))
    opaque = pixels[..., 3] > 128
    if not opaque.any():
        return 21.0
    colour = tuple(int(v) for v in np.median(pixels[opaque][:, :3], axis=0))
    behind = np.asarray(image.crop(box).convert("RGB"))
    return ratio_over(behind[~opaque[: behind.shape[0], : behind.shape[1]]], colour)


def _inner(button: Box) -> Box:
    """The part of a pill-shaped button that is all button (no rounded corners)."""
    r = (button[3] - button[1]) // 2
    return (button[0] + r, button[1] + 2, button[2] - r, button[3] - 2)


def _edges(mask: Image.Image, box: Box) -> np.ndarray:
    """Glyphs grown by 2 px (their anti-aliased edges), inside ``box``, as booleans."""
    return np.asarray(mask.crop(box).filter(ImageFilter.MaxFilter(5))) > 0


def _scrim(
    canvas: Image.Image, band: Box, color: RGB, strength: float, fade_from: str, fade_px: int
) -> Image.Image:
    """A panel of ``color`` over ``band``, fading out over ``fade_px`` toward the photo."""
    if strength <= 0:
        return canvas
    x0, y0, x1, y1 = band
    w, h = x1 - x0, y1 - y0
    vertical = fade_from in ("top", "bottom")
    length = h if vertical else w
    ramp = np.clip(np.arange(length) / max(1, fade_px), 0, 1) * strength * 255
    if fade_from in ("bottom", "right"):
        ramp = ramp[::-1]
    alpha = np.tile(ramp[:, None], (1, w)) if vertical else np.tile(ramp[None, :], (h, 1))
    out = canvas.copy()
    out.paste(Image.new("RGB", (w, h), color), (x0, y0), Image.fromarray(alpha.astype(np.uint8)))
    return out


def _text_bands(placement: Placement, subject: Box, unit: int) -> list[tuple[Box, str]]:
    """Where the text block may go (inside the safe zone), each with the side a scrim fades
    from; the one least over the subject first."""
    sx0, sy0, sx1, sy1 = placement.safe_box()
    W, H = placement.size
    m = round(unit * 0.05)
    if W / H > 1.3:  # landscape: a column beside the subject
        cw = round((sx1 - sx0) * 0.48)
        bands = [((sx0, sy0, sx0 + cw, sy1), "right"), ((sx1 - cw, sy0, sx1, sy1), "left")]
    else:
        bh = round((sy1 - sy0) * (0.5 if H > W * 1.4 else 0.40))
        bands = [((sx0, sy1 - bh, sx1, sy1), "top"), ((sx0, sy0, sx1, sy0 + bh), "bottom")]
    inset = [((b[0] + m, b[1] + m, b[2] - m, b[3] - m), side) for b, side in bands]
    # Least over the subject; near-ties (within a fifth of the band) go to the first listed
    # (the bottom: heads are usually in the upper half of a pet photo).
    return sorted(inset, key=lambda bs: round(overlap(bs[0], subject) / max(1, _area(bs[0])) * 5))


def _split(
    photo: Image.Image, subject: Box, placement: Placement, kit: BrandKit, unit: int
) -> tuple[Image.Image, Box, Box]:
    W, H = placement.size
    panel_w = round(W * 0.42)
    picture, sub = hero(photo, subject, (W - panel_w, H), kit.primary)
    canvas = Image.new("RGB", (W, H), kit.primary)
    canvas.paste(picture, (panel_w, 0))
    # A soft seam: the panel's colour fades into the photo.
    seam = round(W * 0.07)
    ramp = np.linspace(255, 0, seam)[None, :].repeat(H, axis=0).astype(np.uint8)
    edge = Image.new("RGB", (seam, H), kit.primary)
    canvas.paste(edge, (panel_w, 0), Image.fromarray(ramp))
    sx0, sy0, sx1, sy1 = placement.safe_box()
    m = round(unit * 0.07)
    band = (max(sx0, 0) + m, sy0 + m, panel_w - m // 2, sy1 - m)
    sub = (sub[0] + panel_w, sub[1], sub[2] + panel_w, sub[3])
    return canvas, sub, band


def _product_box(
    placement: Placement, cut: Image.Image, subject: Box, text_band: Box, look: Look, unit: int
) -> Box:
    W, H = placement.size
    sx0, sy0, sx1, sy1 = placement.safe_box()
    m = round(unit * 0.05)
    area = (sx0 + m, sy0 + m, sx1 - m, sy1 - m)
    subject_area = max(1, _area(subject))

    def at(position: str, scale: float) -> Box:
        ph = round(unit * PRODUCT_SHARE * scale * look.product_scale)
        pw = round(ph * cut.width / cut.height)
        if pw > (area[2] - area[0]) * 0.4:
            pw = round((area[2] - area[0]) * 0.4)
            ph = round(pw * cut.height / cut.width)
        x = area[0] if "left" in position else area[2] - pw
        if position in ("left", "right"):
            y = (area[1] + area[3] - ph) // 2
        else:
            y = area[1] if position.startswith("top") else area[3] - ph
        return (x, y, x + pw, y + ph)

    if look.product_position != "auto":
        return at(look.product_position, 1.0)
    best = None
    for scale in (1.0, 0.85, 0.72, 0.6):
        for position in ("bottom-right", "bottom-left", "top-right", "top-left", "right", "left"):
            box = at(position, scale)
            cost = overlap(box, subject) / subject_area + 2 * overlap(box, text_band) / max(
                1, _area(box)
            )
            if best is None or cost < best[0] - 1e-9:
                best = (cost, box)
        if best[0] <= 0.05:
            break
    return best[1]


def render(
    photo: Image.Image,
    product: Image.Image | None,
    kit: BrandKit,
    headline: str,
    cta: str,
    placement: Placement,
    look: Look = Look(),
    *,
    subject: Box | None = None,
    full_frame: bool = False,
) -> Rendered:
    """Lay out one creative. ``product``: the cut-out (None when an image model already put
    it in ``photo``). ``subject``: the subject's box in ``photo`` (saliency when None).
    ``full_frame``: ``photo`` already has the placement's shape (an image model's output)."""
    W, H = placement.size
    unit = min(W, H)
    photo = adjust(photo, look)
    subject = subject or subject_box(photo)
    if full_frame and photo.size != (W, H):
        # A model's picture of nearly the placement's shape: fitted, its subject found anew.
        photo = ImageOps.fit(photo, (W, H), Image.Resampling.LANCZOS)
        subject = subject_box(photo)
    if full_frame or W / H <= 1.3:
        canvas, sub = (photo, subject) if full_frame else hero(photo, subject, (W, H), kit.primary)
        (band, fade), *_ = _text_bands(placement, sub, unit)
    else:
        # Landscape display: a panel of the brand's colour for the text, the photo beside it.
        canvas, sub, band = _split(photo, subject, placement, kit, unit)
        fade = "none"
    product_box = None
    if product is not None:
        product_box = _product_box(placement, product, sub, band, look, unit)
        scaled = product.resize(
            (product_box[2] - product_box[0], product_box[3] - product_box[1]),
            Image.Resampling.LANCZOS,
        )
        shaded, (ox, oy) = with_shadow(scaled, unit)
        canvas = canvas.copy()
        canvas.paste(shaded, (product_box[0] - ox, product_box[1] - oy), shaded)

    # The text block: optional logo/wordmark, headline, call-to-action button; anchored to
    # the band's outer edge (the frame's edge side), centred for a column.
    bx0, by0, bx1, by1 = band
    width = bx1 - bx0
    if product_box is not None and overlap(product_box, band):
        # A product beside the text (landscape, or placed by hand) narrows the block.
        if product_box[0] > (bx0 + bx1) / 2:
            bx1 = min(bx1, product_box[0] - round(unit * 0.03))
        else:
            bx0 = max(bx0, product_box[2] + round(unit * 0.03))
        width = bx1 - bx0
    gap = round(unit * 0.025)
    cta_px = max(18, round(unit * 0.034))
    cta_font = kit.font(cta_px)
    cta_pad = (round(cta_px * 0.9), round(cta_px * 0.55))
    cta_w = round(cta_font.getlength(cta)) + 2 * cta_pad[0]
    cta_h = round(cta_px * 1.17) + 2 * cta_pad[1]
    logo_h = round(unit * 0.05) if kit.logo is not None else 0
    brand_px = max(18, round(unit * 0.032)) if kit.logo is None and kit.name else 0
    top_extra = (logo_h or round(brand_px * 1.2)) + (gap if (logo_h or brand_px) else 0)
    head_font, lines, spacing = _fit_headline(
        kit,
        headline,
        width,
        (by1 - by0) - cta_h - top_extra - 2 * gap,
        round(unit * (0.09 if H > 1.5 * W else 0.075)),
    )
    head_px = head_font.size
    head_h = round(len(lines) * head_px * 1.17 + (len(lines) - 1) * spacing)
    block_h = top_extra + head_h + gap + cta_h
    if fade == "top":
        y = by1 - block_h
    elif fade == "bottom":
        y = by0
    else:
        y = (by0 + by1 - block_h) // 2
    logo_box = None
    brand_origin = None
    if logo_h:
        logo = ImageOps.contain(kit.logo.convert("RGBA"), (round(width * 0.4), logo_h))
        logo_box = (bx0, y, bx0 + logo.width, y + logo.height)
    elif brand_px:
        brand_origin = (bx0, y)
    y += top_extra
    head_origin = (bx0, y)
    y += head_h + gap
    cta_box = (bx0, y, bx0 + cta_w, y + cta_h)

    head_mask = text_mask((W, H), lines, head_origin, head_font, spacing)
    head_box = head_mask.getbbox() or (bx0, head_origin[1], bx0 + 1, head_origin[1] + 1)
    head_box = (head_box[0] - 4, head_box[1] - 4, head_box[2] + 4, head_box[3] + 4)
    brand_font = kit.font(brand_px) if brand_px else None
    brand_mask = (
        text_mask((W, H), [kit.name], brand_origin, brand_font, 0) if brand_origin else None
    )
    # The scrim runs from the text to the frame's edge (a gradient, not a box), full width
    # for a band, full height for a column.
    pad = round(unit * 0.08)
    scrim_band = {
        "top": (0, max(0, band[1] - pad), W, H),
        "bottom": (0, 0, W, min(H, band[3] + pad)),
        "right": (0, 0, min(W, band[2] + pad), H),
        "left": (max(0, band[0] - pad), 0, W, H),
    }.get(fade, band)
    need = required_ratio(head_px, bold=True, strict=True)
    head_edges = _edges(head_mask, head_box)
    colours = list(dict.fromkeys([kit.text, WHITE, BLACK]))
    for strength in SCRIM_STEPS:
        base = _scrim(canvas, scrim_band, kit.primary, strength, fade, pad)
        # Measured on the pixels the text will sit on (photo, product and scrim rendered).
        pixels = np.asarray(base.crop(head_box))[~head_edges]
        scored = [(ratio_over(pixels, c), c) for c in colours]
        # The kit's text colour when it passes, else the best of black and white.
        passing = [sc for sc in scored if sc[0] >= need + 0.05]
        # A logo is a graphic: WCAG 1.4.11 asks 3:1 against what is around it.
        logo_ok = logo_box is None or _logo_contrast(base, logo, logo_box) >= GRAPHIC_RATIO
        if passing and logo_ok:
            ratio, color = passing[0]
            break
    else:  # only a logo the colour of the kit's panel; the best, and the check says so
        ratio, color = max(scored)
    canvas = base
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text(head_origin, "\n".join(lines), font=head_font, fill=color, spacing=spacing)
    boxes = [
        TextBox(
            "headline",
            " ".join(lines),
            head_box,
            contrast_under(canvas, head_box, color, head_mask),
            need,
            color,
            head_px,
            head_origin,
            lines,
            spacing,
        )
    ]
    if brand_origin and brand_font and brand_mask is not None:
        bbox = brand_mask.getbbox() or (0, 0, 1, 1)
        bbox = (bbox[0] - 4, bbox[1] - 4, bbox[2] + 4, bbox[3] + 4)
        draw.text(brand_origin, kit.name, font=brand_font, fill=color)
        boxes.append(
            TextBox(
                "brand",
                kit.name,
                bbox,
                contrast_under(canvas, bbox, color, brand_mask),
                required_ratio(brand_px, True, strict=True),
                color,
                brand_px,
                brand_origin,
                [kit.name],
                0,
            )
        )
    if logo_box is not None:
        canvas.paste(logo, logo_box[:2], logo)
    # The button: the kit's accent, with whichever of black and white reads better on it.
    cta_color = max((WHITE, BLACK), key=lambda c: contrast_ratio(c, kit.accent))
    draw.rounded_rectangle(cta_box, radius=cta_h // 2, fill=kit.accent)
    cta_origin = (cta_box[0] + cta_pad[0], cta_box[1] + cta_pad[1])
    draw.text(cta_origin, cta, font=cta_font, fill=cta_color)
    cta_mask = text_mask((W, H), [cta], cta_origin, cta_font, 0)
    boxes.append(
        TextBox(
            "cta",
            cta,
            cta_box,
            contrast_under(canvas, _inner(cta_box), cta_color, cta_mask),
            required_ratio(cta_px, True, strict=True),
            cta_color,
            cta_px,
            cta_origin,
            [cta],
            0,
        )
    )

    safe = placement.safe_box()
    problems = [
        f"{b.role} box {list(b.box)} is outside the safe zone {list(safe)}"
        for b in boxes
        if not inside(b.box, safe)
    ]
    if logo_box is not None and not inside(logo_box, safe):
        problems.append(f"logo box {list(logo_box)} is outside the safe zone {list(safe)}")
    problems += [
        f"{b.role} contrast {b.contrast:.2f}:1 is under {b.required}:1"
        for b in boxes
        if b.contrast < b.required
    ]
    return Rendered(canvas, boxes, product_box, sub, logo_box, not problems, problems)
