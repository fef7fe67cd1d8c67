"""An evaluation as people read it: a markdown table and a small bar chart (PNG drawn with
Pillow, embedded as a data URI, so Dagster's metadata shows it with no file to serve)."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw

from adrag_assets.evaluation.evaluate import MODES, PRECISION_AT, EvalReport

COLORS = {"dense": (76, 114, 176), "text": (221, 132, 82), "hybrid": (85, 168, 104)}
ZERO_SHOT_COLOR = (129, 114, 179)


def markdown(report: EvalReport) -> str:
    """Per column: zero-shot top-1/top-5, then P@k and mAP per search mode."""
    if not report.has_labels:
        return "_no label column with 2+ values of 2+ photos each: nothing to evaluate_"
    keys = ["zero_shot_top1", "zero_shot_top5"] + [
        f"{m}_{s}" for m in MODES for s in [*(f"p_at_{k}" for k in PRECISION_AT), "map"]
    ]
    lines = [
        "| column | classes | " + " | ".join(keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for column, means in report.per_column.items():
        cells = " | ".join(f"{means[k]:.3f}" for k in keys)
        lines.append(f"| {column} | {len(report.per_label[column])} | {cells} |")
    overall = " | ".join(f"{report.overall[k]:.3f}" for k in keys)
    lines.append(f"| **overall** | | {overall} |")
    return "\n".join(lines)


def chart_png(report: EvalReport, width: int = 560, height: int = 240) -> bytes:
    """Bars: zero-shot top-1/top-5 (headline column), then P@1, P@3, P@10, mAP per mode."""
    bars: list[tuple[str, float, tuple[int, int, int]]] = [
        ("zs@1", report.overall.get("zero_shot_top1") or 0.0, ZERO_SHOT_COLOR),
        ("zs@5", report.overall.get("zero_shot_top5") or 0.0, ZERO_SHOT_COLOR),
    ]
    for mode in MODES:
        for stat in [*(f"p_at_{k}" for k in PRECISION_AT), "map"]:
            short = stat.replace("p_at_", "P@").replace("map", "mAP")
            bars.append((short, report.overall.get(f"{mode}_{stat}") or 0.0, COLORS[mode]))
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, bottom = 30, 24, height - 30
    step = (width - left - 10) / len(bars)
    for y in (0.0, 0.5, 1.0):
        yy = bottom - y * (bottom - top)
        draw.line((left, yy, width - 10, yy), fill=(220, 220, 220))
        draw.text((2, yy - 6), f"{y:.1f}", fill="black")
    for i, (name, value, color) in enumerate(bars):
        x0 = left + i * step + 3
        draw.rectangle((x0, bottom - value * (bottom - top), x0 + step - 6, bottom), fill=color)
        draw.text((x0, bottom + 4), name, fill="black")
    legend = [("zero-shot", ZERO_SHOT_COLOR), *((m, COLORS[m]) for m in MODES)]
    for i, (name, color) in enumerate(legend):
        draw.rectangle((left + i * 110, 6, left + i * 110 + 10, 16), fill=color)
        draw.text((left + i * 110 + 14, 5), name, fill="black")
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def chart_markdown(report: EvalReport) -> str:
    data = base64.b64encode(chart_png(report)).decode()
    return f"![retrieval quality of {report.encoder_id}](data:image/png;base64,{data})"
