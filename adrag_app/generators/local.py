"""An offline generator: a clean, deterministic layout instead of a diffusion model.

It lets the whole pipeline (retrieval -> generation -> review) run without a Replicate token,
and gives tests and demos a stable image to look at. Same inputs -> byte-identical PNG.
"""

from __future__ import annotations

import io
import re
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, UnidentifiedImageError

from adrag_app.generators.base import GeneratedImage, GenerationError, read_input_image

WHITE = (255, 255, 255)
MAX_HEADLINE_LINES = 3
_HEADLINE_LINE = re.compile(r"^\s*(?:headline|tagline|title)\s*[:=]\s*(.+?)\s*$", re.I | re.M)
_QUOTED = re.compile(r"[\"\u201c]([^\"\u201d\n]{3,})[\"\u201d]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# Pillow's built-in font is a small Latin subset (no accents, dashes or currency signs); these
# stand in for common characters it lacks, before falling back to stripping accents.
_STAND_INS = {
    "\u2014": "-",
    "\u2013": "-",
    "\u2212": "-",
    "\u00df": "ss",
    "\u00c6": "AE",
    "\u00e6": "ae",
    "\u0152": "OE",
    "\u0153": "oe",
    "\u00d8": "O",
    "\u00f8": "o",
    "\u20ac": "EUR ",
    "\u00a3": "GBP ",
    "\u00a0": " ",
}


def headline_from_prompt(prompt: str) -> str:
    """Pick the words to print on the ad from a generation prompt.

    Prompts are written for an image model, so prefer an explicit ``Headline: ...`` line, then
    the first quoted phrase (the usual way to ask a model for on-image text), then the first
    sentence.
    """
    text = prompt.strip()
    if (match := _HEADLINE_LINE.search(text)) or (match := _QUOTED.search(text)):
        candidate = match.group(1)
    else:
        candidate = _SENTENCE_END.split(text, maxsplit=1)[0]
    return " ".join(candidate.strip().strip("\"'\u201c\u201d").split())


def _open_image(path: Path, role: str) -> Image.Image:
    data = read_input_image(path, role)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise GenerationError(f"The {role} image {path} is not a readable image file.") from None
    # Phone photos store their rotation in EXIF; without this the ad comes out sideways.
    return ImageOps.exif_transpose(image)


def renderable_text(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """Replace characters ``font`` has no glyph for, so the ad never shows empty boxes."""
    missing = bytes(font.getmask("\uffff"))  # what an unknown character renders as

    def drawable(char: str) -> bool:
        return char.isspace() or bytes(font.getmask(char)) != missing

    out = []
    for char in text:
        if drawable(char):
            out.append(char)
            continue
        stand_in = _STAND_INS.get(char)
        if stand_in is None:  # e.g. "é" -> "e"; characters with no Latin form are dropped
            decomposed = unicodedata.normalize("NFKD", char)
            stand_in = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append("".join(c for c in stand_in if drawable(c)))
    return " ".join("".join(out).split())


def _wrap(
    text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: float, max_lines: int
) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        # A single word wider than the band (a URL, a long compound) is cut hard rather than
        # allowed to run off the canvas.
        while font.getlength(word) > max_width:
            cut = max(1, len(word) - 1)
            while cut > 1 and font.getlength(word[:cut]) > max_width:
                cut -= 1
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        trial = f"{current} {word}".strip()
        if font.getlength(trial) <= max_width:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "\u2026") > max_width:
            last = last[:-1].rstrip()
        lines = [*lines[: max_lines - 1], last + "\u2026"]
    return lines


class LocalCompositor:
    """Seed photo as the background, the brand image on a white card, the headline in a band."""

    name = "local"
    model = "adrag-local-compositor-v1"

    def __init__(
        self,
        size: tuple[int, int] = (1024, 1024),
        *,
        font_path: Path | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``font_path``: a TrueType font for headlines with characters (accents, CJK) that
        Pillow's built-in font lacks; by default the built-in one, so output never depends on
        which fonts a machine happens to have."""
        if min(size) < 256:
            raise ValueError("the local compositor needs at least 256x256 to lay out an ad")
        self.size = size
        self.font_path = font_path
        self._clock = clock

    def _font(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        if self.font_path is not None:
            return ImageFont.truetype(str(self.font_path), size=size)
        return ImageFont.load_default(size=size)

    def generate(
        self,
        seed_image: Path,
        brand_image: Path,
        prompt: str,
        *,
        seed: int | None = None,
        aspect_ratio: str | None = None,
    ) -> GeneratedImage:
        """Compose the ad. ``seed`` and ``aspect_ratio`` are accepted for interface parity:
        this layout is fixed (campaign creatives lay out each placement themselves, see
        :mod:`adrag_app.creative.layout`)."""
        started = self._clock()
        canvas = self.compose(
            _open_image(seed_image, "seed"), _open_image(brand_image, "brand"), prompt
        )
        buffer = io.BytesIO()
        # No metadata and fixed settings so equal inputs give byte-identical files (cacheable,
        # and diffable in tests).
        canvas.save(buffer, format="PNG", optimize=False, compress_level=6)
        return GeneratedImage(
            png=buffer.getvalue(),
            generator=self.name,
            model=self.model,
            duration_s=self._clock() - started,
        )

    def compose(self, seed: Image.Image, brand: Image.Image, prompt: str) -> Image.Image:
        """Lay out one ad and return it as an RGB image of ``self.size``."""
        width, height = self.size
        unit = min(width, height)
        margin = round(unit * 0.04)

        canvas = ImageOps.fit(seed.convert("RGB"), self.size, Image.Resampling.LANCZOS)
        canvas = canvas.convert("RGBA")

        band_top = self._draw_headline_band(canvas, headline_from_prompt(prompt), unit, margin)
        self._draw_brand_card(canvas, brand, unit, margin, max_bottom=band_top - margin)
        return canvas.convert("RGB")

    def _draw_headline_band(
        self, canvas: Image.Image, headline: str, unit: int, margin: int
    ) -> int:
        """Draw the bottom band and return its top edge (the card must stay above it)."""
        width, height = canvas.size
        font = self._font(max(18, round(unit * 0.045)))
        headline = renderable_text(headline, font)
        if not headline:
            return height
        lines = _wrap(headline, font, width - 2 * margin, MAX_HEADLINE_LINES)
        ascent, descent = font.getmetrics()
        line_height = round((ascent + descent) * 1.2)
        pad = round(unit * 0.035)
        band_top = height - (len(lines) * line_height + 2 * pad)

        overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        # Translucent dark band: keeps white text readable on any photo without hiding it.
        draw.rectangle((0, band_top, width, height), fill=(12, 12, 16, 178))
        for index, line in enumerate(lines):
            draw.text((margin, band_top + pad + index * line_height), line, font=font, fill=WHITE)
        canvas.alpha_composite(overlay)
        return band_top

    def _draw_brand_card(
        self, canvas: Image.Image, brand: Image.Image, unit: int, margin: int, max_bottom: int
    ) -> None:
        width, _ = canvas.size
        pad = round(unit * 0.016)
        radius = round(unit * 0.024)
        max_inner = (round(unit * 0.28), max(32, min(round(unit * 0.4), max_bottom - 2 * margin)))
        product = ImageOps.contain(brand.convert("RGBA"), max_inner, Image.Resampling.LANCZOS)
        card_w, card_h = product.width + 2 * pad, product.height + 2 * pad
        left, top = width - margin - card_w, margin

        # Soft drop shadow: a blurred, offset copy of the card's shape.
        shadow = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        offset, blur = round(unit * 0.008), round(unit * 0.014)
        ImageDraw.Draw(shadow).rounded_rectangle(
            (left, top + offset, left + card_w, top + offset + card_h),
            radius=radius,
            fill=(0, 0, 0, 110),
        )
        canvas.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(blur)))

        card = Image.new("RGBA", (card_w, card_h), (0, 0, 0, 0))
        ImageDraw.Draw(card).rounded_rectangle(
            (0, 0, card_w - 1, card_h - 1), radius=radius, fill=(*WHITE, 255)
        )
        # Pasting with the product's own alpha keeps cut-out PNGs (transparent background)
        # on clean white instead of a black box.
        card.alpha_composite(product, (pad, pad))
        canvas.alpha_composite(card, (left, top))
