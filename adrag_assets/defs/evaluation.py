"""Retrieval quality of the configured encoder, as an asset: zero-shot CLIP accuracy and
text-to-photo precision per search mode over the labelled photos.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

from typing import TYPE_CHECKING

import dagster as dg

from adrag_assets.defs.embeddings import ENCODER_VERSION
from adrag_assets.defs.resources import GROUP, EncoderResource, MilvusResource, TablesResource
from adrag_assets.embeddings.mlflow_model import MODEL_NAME, log_version_metrics
from adrag_assets.evaluation.evaluate import EvalReport, evaluate
from adrag_assets.evaluation.gate import GATE_METRIC, quality_gate
from adrag_assets.evaluation.report import chart_markdown, markdown
from adrag_assets.index.floor import DenseFloor, calibrate
from adrag_assets.index.milvus import MilvusIndex, collection_name
from adrag_assets.settings import load_settings
from adrag_assets.tables import Tables
from adrag_assets.tracing import redact

if TYPE_CHECKING:  # the encoder module imports torch: a run loads it only when it encodes
    from adrag_assets.embeddings.encoder import ClipEncoder


def eval_condition(cron: str) -> dg.AutomationCondition:
    """When retrieval_eval runs by itself: the first time an index exists, when the encoder
    (its code version) changes, and after the index changed, at most once per ``cron`` tick.

    Each upload changes the metrics a little and an evaluation loads the model, so uploads
    are batched by the schedule; nothing is missed, the next tick evaluates what came in.
    """
    ac = dg.AutomationCondition
    handled = ac.newly_requested() | ac.newly_updated()
    index_changed = ac.any_deps_updated().since(handled).with_label("index changed since")
    tick_passed = ac.cron_tick_passed(cron).since(handled).with_label(f"'{cron}' passed since")
    switched = ac.code_version_changed().since(handled).with_label("encoder changed since")
    return (
        (ac.on_missing() | switched | (index_changed & tick_passed))
        & ~ac.any_deps_missing()
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
    ).with_label("evaluate after a switch, or after index changes once per period")


@dg.asset(
    deps=["image_index"],
    code_version=ENCODER_VERSION,
    automation_condition=eval_condition(load_settings().eval_cron),
    group_name=GROUP,
    kinds={"milvus", "mlflow"},
    description="Retrieval quality of the configured encoder over the labelled photos: "
    "zero-shot CLIP top-1/top-5 per label column, and P@1/P@3/P@10/mAP of 'a photo of a "
    "{value}' in dense, text and hybrid search. Logged to the encoder's MLflow version.",
)
def retrieval_eval(
    context: dg.AssetExecutionContext,
    tables: TablesResource,
    encoder: EncoderResource,
    milvus: MilvusResource,
) -> dg.MaterializeResult:
    enc = encoder.get()
    s = load_settings()
    # The encoder's own collection, live or not: a new encoder is judged before it goes live.
    report = evaluate(
        tables.get(),
        milvus.get(),
        enc,
        collection_name(enc.encoder_id),
        s.hybrid_ranker,
        s.hybrid_weights,
        log=context.log,
    )
    if enc.is_random:
        context.log.warning(
            "encoder %s: zero-shot accuracy is expected at chance (1 / classes)", enc.label
        )
    floor = store_dense_floor(context, milvus.get(), report, enc.is_random, s.floor_precision)
    registry = log_to_registry(context, report) if report.has_labels else ""
    return dg.MaterializeResult(
        metadata={
            **eval_metadata(report, enc.label, registry),
            "dense_floor": "" if floor.floor is None else round(floor.floor, 6),
            "dense_floor_reason": floor.reason,
        }
    )


def store_dense_floor(
    context: dg.AssetExecutionContext,
    index: MilvusIndex,
    report: EvalReport,
    random_weights: bool,
    precision: float,
) -> DenseFloor:
    """Calibrate the relevance floor's dense side and store it with the encoder's collection,
    where every search reads it."""
    floor = calibrate(report.dense_top1, precision, random_weights)
    index.set_properties(report.collection, **floor.properties())
    context.log.info(
        "dense floor of %s: %s (%s)",
        report.collection,
        "not trusted" if floor.floor is None else f"{floor.floor:.4f}",
        floor.reason,
    )
    return floor


def eval_metadata(report: EvalReport, label: str, registry: str = "") -> dict:
    head = {
        k: dg.MetadataValue.float(float(v))
        for k, v in report.overall.items()
        if v is not None and (k.startswith("zero_shot") or "p_at_3" in k or k.endswith("map"))
    }
    return {
        "encoder_id": report.encoder_id,
        "encoder": label,
        "collection": report.collection,
        "photos": report.photos,
        "labelled": report.labelled,
        "primary_column": report.primary_column or "",
        **head,
        "results": dg.MetadataValue.md(markdown(report)),
        "chart": dg.MetadataValue.md(chart_markdown(report)) if report.has_labels else "",
        "summary": dg.MetadataValue.json(report.summary()),
        "encoder_model": registry,
    }


def log_to_registry(context: dg.AssetExecutionContext, report: EvalReport) -> str:
    """Log the metrics to the encoder's registered MLflow version; its model URI, or "".

    MLflow is a bystander: whatever goes wrong with it, the evaluation stands.
    """
    try:
        version = log_version_metrics(report.encoder_id, report.metrics())
    except Exception as e:
        context.log.warning(
            "MLflow: could not log the evaluation of %s (%s)",
            report.encoder_id,
            redact(f"{type(e).__name__}: {e}"),
        )
        return ""
    if version is None:
        context.log.info(
            "encoder %s is not registered in MLflow (`adrag register-encoder`): metrics "
            "not logged there",
            report.encoder_id,
        )
        return ""
    return f"models:/{MODEL_NAME}/{version}"


def quality_gate_check(
    context: dg.AssetExecutionContext,
    tables: Tables,
    index: MilvusIndex,
    encoder: "ClipEncoder",
    collection: str,
) -> dg.AssetCheckResult:
    """The ``quality_gate`` check of ``image_index``: may ``collection`` go live?"""
    s = load_settings()
    gate = quality_gate(
        tables,
        index,
        encoder,
        collection,
        s.eval_margin,
        s.eval_override,
        s.hybrid_ranker,
        s.hybrid_weights,
        s.precision,
        log=context.log,
    )
    (context.log.info if gate.passed else context.log.error)("quality gate: %s", gate.reason)
    return dg.AssetCheckResult(
        check_name="quality_gate",
        passed=gate.passed,
        metadata={
            "reason": gate.reason,
            "metric": GATE_METRIC,
            "new": gate.new if gate.new is not None else "",
            "live": gate.live if gate.live is not None else "",
            "live_encoder_id": gate.live_encoder_id or "",
            "margin_points": s.eval_margin,
            "overridden": gate.overridden,
            "skipped": gate.skipped,
        },
    )


def skipped_gate() -> dg.AssetCheckResult:
    """The gate's result when the index check failed first: the alias stays anyway."""
    return dg.AssetCheckResult(
        check_name="quality_gate",
        passed=False,
        metadata={"reason": "not evaluated: the index does not match image_embeddings"},
    )
