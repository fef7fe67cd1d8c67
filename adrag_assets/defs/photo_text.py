"""Text in photos: the words OCR reads in each rendition, in the ``photo_text`` table.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.defs.resources import GROUP, POOL, TablesResource
from adrag_assets.images.ocr import OCR_VERSION, OcrStats, sync_photo_text
from adrag_assets.settings import load_settings

READ_CHECK = "every_photo_read"


def ocr_code_version() -> str:
    """The OCR version, or "off": turning OCR on (or a new OCR version) is a code change the
    automation acts on, reading every photo without a current row."""
    return OCR_VERSION if load_settings().ocr else "off"


@dg.asset(
    deps=["images"],
    pool=POOL,
    code_version=ocr_code_version(),
    # Eager only while OCR is on: off, a run after each upload would read nothing and only
    # make image_index run again.
    automation_condition=(
        dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed()
        if load_settings().ocr
        else dg.AutomationCondition.code_version_changed()
    ),
    group_name=GROUP,
    kinds={"delta", "onnx"},
    description="Delta table: the words OCR (RapidOCR, PP-OCRv4 on ONNX Runtime, CPU) reads "
    "in each photo's rendition, one row per photo (image_id, text, boxes, ocr_version). Only "
    "photos without a row of the current OCR version are read; rows of deleted photos are "
    "removed. The index adds the words to each photo's BM25 text. ADRAG_OCR=off skips it.",
    check_specs=[
        dg.AssetCheckSpec(
            READ_CHECK,
            asset="photo_text",
            description="Every photo of images has a row of the current OCR version (a "
            "warning while OCR is off and photos are unread).",
        )
    ],
)
def photo_text(context: dg.AssetExecutionContext, tables: TablesResource) -> dg.MaterializeResult:
    t = tables.get()
    if not load_settings().ocr:
        context.log.info("ADRAG_OCR=off: photos are not read")
        stats = OcrStats(mode="off")
        stats.left = t.count("images") if t.exists("images") else 0
        if t.exists("photo_text"):
            stats.left -= t.count("photo_text", f"ocr_version = '{OCR_VERSION}'")
            stats.rows = t.count("photo_text")
    else:
        stats = sync_photo_text(t, log=context.log)
    return dg.MaterializeResult(
        metadata={
            "mode": stats.mode,
            "ocr_version": OCR_VERSION,
            "read": stats.read,
            "with_text": stats.with_text,
            "failed": stats.failed,
            "deleted": stats.deleted,
            "ms_per_photo": round(stats.ms_per_photo, 1),
            "dagster/row_count": stats.rows,
            "delta_version": stats.version,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=READ_CHECK,
                passed=stats.left <= 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"unread": max(stats.left, 0), "ocr": stats.mode != "off"},
            )
        ],
    )
