"""The offline generator: no diffusion model, so campaign creatives lay out photo, product
and text themselves (:mod:`adrag_app.creative.layout`, chosen by this generator's name).

Its :meth:`LocalCompositor.generate` keeps the generator contract offline: the seed photo in
the asked aspect ratio with the product on a white card and, like the model's picture, no
text (adrag draws the words). Same inputs -> byte-identical PNG.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError

from adrag_app.generators.base import GeneratedImage, GenerationError, read_input_image

WHITE = (255, 255, 255)


def _open_image(path: Path, role: str) -> Image.Image:
    data = read_input_image(path, role)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise GenerationError(f"The {role} image {path} is not a readable image file.") from None
    # Phone photos store their rotation in EXIF; without this the ad comes out sideways.
    return ImageOps.exif_transpose(image)


class LocalCompositor:
    """Seed photo as the background, the brand image on a white card; no text."""

    name = "local"
    model = "adrag-local-compositor-v1"

    def __init__(
        self,
        size: tuple[int, int] = (1024, 1024),
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if min(size) < 256:
            raise ValueError("the local compositor needs at least 256x256 to lay out an ad")
        self.size = size
        self._clock = clock

    def generate(
        self,
        seed_image: Path,
        brand_image: Path,
        prompt: str,
        *,
        seed: int | None = None,
        aspect_ratio: str | None = None,
    ) -> GeneratedImage:
        """The picture for ``aspect_ratio`` (``"4:5"``; None: ``self.size``). ``prompt`` and
        ``seed`` are accepted for interface parity: this layout is fixed."""
        started = self._clock()
        size = self._size(aspect_ratio)
        canvas = self.compose(
            _open_image(seed_image, "seed"), _open_image(brand_image, "brand"), size
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

    def _size(self, aspect_ratio: str | None) -> tuple[int, int]:
        if not aspect_ratio:
            return self.size
        w, sep, h = aspect_ratio.partition(":")
        try:
            ratio = float(w) / float(h)
        except ValueError:
            raise ValueError(f"aspect ratio {aspect_ratio!r} is not W:H") from None
        if not sep or ratio <= 0:
            raise ValueError(f"aspect ratio {aspect_ratio!r} is not W:H")
        side = max(self.size)
        return (side, round(side / ratio)) if ratio >= 1 else (round(side * ratio), side)

    def compose(
        self, seed: Image.Image, brand: Image.Image, size: tuple[int, int] | None = None
    ) -> Image.Image:
        """Lay out one picture and return it as an RGB image of ``size`` (``self.size``)."""
        size = size or self.size
        unit = min(size)
        margin = round(unit * 0.04)
        canvas = ImageOps.fit(seed.convert("RGB"), size, Image.Resampling.LANCZOS)
        canvas = canvas.convert("RGBA")
        self._draw_brand_card(canvas, brand, unit, margin, max_bottom=size[1] - margin)
        return canvas.convert("RGB")

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
