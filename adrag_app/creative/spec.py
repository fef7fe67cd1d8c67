"""Does a creative meet its placement's spec? The same rules at creation and in the asset check."""

from __future__ import annotations

from typing import Any

from PIL import Image

from adrag_app.creative.placements import Placement

MAX_SUBJECT_COVER = 0.10  # the product may hide at most this share of the subject


def _inside(box: list[int], outer: tuple[int, int, int, int]) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def spec_problems(meta: dict[str, Any], image: Image.Image, placement: Placement) -> list[str]:
    """Every way ``image`` (with its sidecar ``meta``) breaks ``placement``'s spec; [] if none."""
    problems = []
    if image.size != placement.size:
        problems.append(
            f"the image is {image.width}x{image.height}; {placement.label} needs "
            f"{placement.width}x{placement.height}"
        )
    safe = placement.safe_box()
    for block in meta.get("text_boxes", []):
        if not _inside(block["box"], safe):
            problems.append(f"the {block['role']} is outside the safe zone {list(safe)}")
        if block["contrast"] < block["required"]:
            problems.append(
                f"the {block['role']} contrast is {block['contrast']}:1, "
                f"under {block['required']}:1"
            )
    if meta.get("logo_box") and not _inside(meta["logo_box"], safe):
        problems.append(f"the logo is outside the safe zone {list(safe)}")
    headline = meta.get("headline", "")
    if len(headline) > placement.limits.headline:
        problems.append(
            f"the headline is {len(headline)} characters; {placement.label} allows "
            f"{placement.limits.headline}"
        )
    if len(meta.get("primary_text", "")) > placement.limits.primary_text:
        problems.append(f"the primary text is over {placement.limits.primary_text} characters")
    product, subject = meta.get("product_box"), meta.get("subject_box")
    if product and subject:
        ox = max(0, min(product[2], subject[2]) - max(product[0], subject[0]))
        oy = max(0, min(product[3], subject[3]) - max(product[1], subject[1]))
        area = max(1, (subject[2] - subject[0]) * (subject[3] - subject[1]))
        if ox * oy / area > MAX_SUBJECT_COVER:
            problems.append(f"the product covers {ox * oy / area:.0%} of the subject")
    return problems
