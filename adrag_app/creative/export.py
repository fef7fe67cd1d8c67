"""A set of creatives as one file: a contact sheet image, or a zip with a manifest CSV."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from adrag_app.creative.brandkit import DEFAULT_FONT

MANIFEST_COLUMNS = ("file", "placement", "size", "headline", "primary text", "call to action")


@dataclass(frozen=True)
class Item:
    name: str  # the file's name inside the zip / the caption on the sheet
    png: bytes
    placement: str
    width: int
    height: int
    headline: str
    primary_text: str
    cta: str
    preview: Image.Image | None = None  # a small copy already in memory (saves a decode)


def manifest_csv(items: Sequence[Item]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for i in items:
        writer.writerow(
            (i.name, i.placement, f"{i.width}x{i.height}", i.headline, i.primary_text, i.cta)
        )
    return out.getvalue()


def zip_bytes(items: Sequence[Item]) -> bytes:
    """The creatives (stored: PNGs do not compress) and ``manifest.csv``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for item in items:
            zf.writestr(item.name, item.png, compress_type=zipfile.ZIP_STORED)
        zf.writestr("manifest.csv", manifest_csv(items), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def contact_sheet(items: Sequence[Item], columns: int, row_height: int = 360) -> bytes:
    """One PNG: a row per variant (``columns`` placements each), captioned, same height."""
    font = ImageFont.truetype(str(DEFAULT_FONT), 15) if DEFAULT_FONT.is_file() else None
    thumbs = []
    for item in items:
        if item.preview is not None:
            im = item.preview.convert("RGB")
        else:
            with Image.open(io.BytesIO(item.png)) as opened:
                im = opened.convert("RGB")
        thumbs.append(im.resize((round(im.width * row_height / im.height), row_height)))
    gap, caption = 16, 26
    rows = [thumbs[i : i + columns] for i in range(0, len(thumbs), columns)]
    width = max((sum(t.width for t in r) + gap * (len(r) + 1) for r in rows), default=gap)
    height = len(rows) * (row_height + caption + gap) + gap
    sheet = Image.new("RGB", (width, height), (245, 245, 247))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        x, y = gap, gap + r * (row_height + caption + gap)
        for c, thumb in enumerate(row):
            item = items[r * columns + c]
            sheet.paste(thumb, (x, y))
            draw.text(
                (x, y + row_height + 4),
                f"{item.placement} {item.width}x{item.height}",
                fill=(60, 60, 67),
                font=font,
            )
            x += thumb.width + gap
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
