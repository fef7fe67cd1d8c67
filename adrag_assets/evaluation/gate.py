"""The quality gate of an encoder switch: the new collection goes live only when its
retrieval is not worse than the live one's by more than a margin.

Both sides are evaluated now, on the same labels and the same search settings, each with
the encoder that built its collection. The figure compared is hybrid P@3 (what the app
shows a marketer: the top-3 of the default search).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adrag_assets.evaluation.evaluate import evaluate
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.search import live_encoder
from adrag_assets.tables import Tables

if TYPE_CHECKING:
    from adrag_assets.embeddings.encoder import ClipEncoder

GATE_METRIC = "hybrid_p_at_3"


@dataclass(frozen=True)
class GateResult:
    passed: bool  # the alias may move
    reason: str
    new: float | None = None
    live: float | None = None
    live_encoder_id: str | None = None
    overridden: bool = False
    skipped: bool = False  # nothing to compare (no switch, or no labels)


def quality_gate(
    tables: Tables,
    index: MilvusIndex,
    encoder: ClipEncoder,
    collection: str,
    margin_points: float,
    override: bool = False,
    ranker: str = "weighted",
    weights: tuple[float, float] = (0.5, 0.5),
    precision: str = "auto",
    log: logging.Logger | None = None,
) -> GateResult:
    """May ``collection`` (``encoder``'s, synced and checked) replace the live collection?"""
    live = index.live_collection()
    if live is None or live == collection:
        return GateResult(True, "no encoder switch: nothing to compare", skipped=True)
    _, old_encoder = live_encoder(index, precision)
    new = evaluate(tables, index, encoder, collection, ranker, weights, log)
    if not new.has_labels:
        return GateResult(
            True,
            "gate skipped: no label column with 2+ values of 2+ photos each to evaluate on",
            live_encoder_id=old_encoder.encoder_id,
            skipped=True,
        )
    old = evaluate(tables, index, old_encoder, live, ranker, weights, log)
    new_v, old_v = new.overall[GATE_METRIC], old.overall[GATE_METRIC]
    # Rounded to the reports' precision, so a margin of 0 means "not worse" exactly.
    worse = round(old_v - new_v, 4) > round(margin_points / 100, 4)
    verdict = (
        f"{GATE_METRIC} {new_v:.4f} for {encoder.encoder_id} vs {old_v:.4f} live "
        f"({old_encoder.encoder_id}), margin {margin_points:g} points"
    )
    if worse and override:
        return GateResult(
            True, f"overridden (ADRAG_EVAL_OVERRIDE): {verdict}", new_v, old_v,
            old_encoder.encoder_id, overridden=True,
        )  # fmt: skip
    return GateResult(
        not worse,
        ("worse: the alias stays: " if worse else "not worse: ") + verdict,
        new_v,
        old_v,
        old_encoder.encoder_id,
    )
