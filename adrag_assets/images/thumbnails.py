"""Small inline thumbnails as markdown with data URIs (shown in Dagster metadata)."""

from __future__ import annotations

import base64
import io

from PIL import Image

from adrag_assets.images.decode import upright_rgb


def thumbnail_markdown(items: list[tuple[str, bytes]], size: int = 96) -> str:
    """A markdown table cell per (caption, image bytes); unreadable images are skipped."""
    cells = []
    for caption, data in items:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (size, size))
                im = upright_rgb(im)
                im.thumbnail((size, size))
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=70)
        except Exception:
            continue
        b64 = base64.b64encode(buf.getvalue()).decode()
        cells.append(f"![{caption}](data:image/jpeg;base64,{b64})<br>`{caption}`")
    if not cells:
        return "_no images_"
    header = "| " + " | ".join(" " for _ in cells) + " |\n|" + "---|" * len(cells) + "\n"
    return header + "| " + " | ".join(cells) + " |"
