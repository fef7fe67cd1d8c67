"""Embeddings: a CLIP vector per image and encoder in the ``image_embeddings`` table, and the
encoder registered as an MLflow model.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.defs.resources import (
    GROUP,
    POOL,
    EncoderResource,
    RayEmbedResource,
    TablesResource,
)
from adrag_assets.embeddings.progress import EmbedProgress, Progress
from adrag_assets.embeddings.spec import EncoderError, EncoderSpec
from adrag_assets.embeddings.sync import EmbedStats, sync_embeddings
from adrag_assets.embeddings.versions import EMBED_VERSION
from adrag_assets.settings import load_settings

SHOWN = 10  # examples listed in a failing check's metadata
CURRENT_CHECK = "embeddings_current"


def encoder_code_version() -> str:
    """The configured encoder's id and the decode/model code version as a code version: a
    new model, or new code that changes what the model sees, makes embeddings stale, and
    the automation acts on the change (a new decode version re-embeds the stale rows)."""
    spec = load_settings().encoder
    try:
        return f"{EncoderSpec.parse(spec).encoder_id}|{EMBED_VERSION}"
    except EncoderError:
        return spec  # the run will fail with the clear error; the code location still loads


ENCODER_VERSION = encoder_code_version()


def stale_left() -> dg.AutomationCondition:
    """True in the tick after a run whose ``embeddings_current`` check failed: stale rows
    are left, so the next bounded batch is re-embedded, until the check passes."""
    check = dg.AssetCheckKey(dg.AssetKey("image_embeddings"), CURRENT_CHECK)
    ac = dg.AutomationCondition
    return (
        ac.any_checks_match(ac.check_failed() & ac.newly_updated())
        .allow(dg.AssetSelection.checks(check))
        .with_label("older vectors left")
        & ~ac.in_progress()
        & ~ac.any_deps_in_progress()
    )


@dg.asset(
    deps=["images"],
    pool=POOL,
    code_version=ENCODER_VERSION,
    # Re-embed on its own when the encoder changes, when new images arrive outside a
    # sensor run (e.g. `images` materialized by hand), and again after a run that left
    # vectors of an older code version (each run re-embeds ADRAG_REEMBED_BATCH of them).
    automation_condition=dg.AutomationCondition.eager()
    | dg.AutomationCondition.code_version_changed()
    | stale_left(),
    group_name=GROUP,
    kinds={"delta", "pytorch"},
    description="Delta table: a CLIP vector per image and encoder (image_id, encoder_id, path, "
    "labels, embedding, embed_version: the decode/model code that made it). Works from "
    "images' change feed: only images new to the configured encoder are embedded, plus a "
    "bounded batch of vectors an older code version made.",
    check_specs=[
        dg.AssetCheckSpec(
            CURRENT_CHECK,
            asset="image_embeddings",
            description="Every vector of the configured encoder was made by the current "
            "decode and model code (embed_version). A warning while older ones are left: "
            "the automation runs image_embeddings again, ADRAG_REEMBED_BATCH rows a run.",
        ),
        dg.AssetCheckSpec(
            "vectors_finite_and_unit_norm",
            asset="image_embeddings",
            description="The vectors this run wrote are finite and of unit norm (every vector "
            "is checked by the audit job).",
        ),
    ],
)
def image_embeddings(
    context: dg.AssetExecutionContext,
    tables: TablesResource,
    encoder: EncoderResource,
    ray: RayEmbedResource,
) -> dg.MaterializeResult:
    enc = encoder.get()
    if enc.is_random:
        context.log.warning("encoder %s", enc.label)
    t = tables.get()
    s = load_settings()

    def observed(report: EmbedProgress) -> None:
        # Per Delta commit: how far the job is, in the asset's event log (the UI plots it).
        context.log_event(
            dg.AssetObservation(asset_key=context.asset_key, metadata=report.metadata())
        )

    stats = sync_embeddings(
        t,
        enc,
        encoder.batch_size,
        log=context.log,
        reembed_batch=s.reembed_batch,
        progress=Progress(s.home, on_commit=observed),
        ray=ray.embedder(encoder),
    )
    return dg.MaterializeResult(
        metadata={
            "encoder_id": enc.encoder_id,
            "encoder": enc.label,
            "mode": stats.mode,
            "embedded_on": stats.embedded_on,
            "images_read": stats.images_read,
            "images_version": stats.images_version,
            "precision": enc.precision,
            "dim": enc.dim,
            "embedded": stats.embedded,
            "updated": stats.updated,
            "relabelled": stats.relabelled,
            "labels_read": stats.labels_read,
            "deleted": stats.deleted,
            "unchanged": stats.unchanged,
            "failed": stats.failed,
            "embed_version": EMBED_VERSION,
            "reembedded": stats.reembedded,
            "marked_current": stats.marked_current,
            "stale": stats.stale,
            "images_per_s": round(stats.images_per_s, 2),
            "dagster/row_count": stats.rows,
            "delta_version": stats.version,
            "dagster/uri": t.uri("image_embeddings"),
        },
        check_results=[current_vectors(stats), written_vectors(stats)],
    )


def current_vectors(stats: EmbedStats) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=CURRENT_CHECK,
        passed=stats.stale == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "embed_version": EMBED_VERSION,
            "stale": stats.stale,
            "reembedded": stats.reembedded,
            "marked_current": stats.marked_current,
            "rows": stats.rows,
        },
    )


def written_vectors(stats: EmbedStats) -> dg.AssetCheckResult:
    """The run's own vectors, checked as they were written; old rows are the audit's."""
    return dg.AssetCheckResult(
        check_name="vectors_finite_and_unit_norm",
        passed=stats.bad_count == 0,
        metadata={
            "scope": "vectors written by this run",
            "vectors": stats.embedded,
            "rows": stats.rows,
            "bad": stats.bad_count,
            "max_norm_error": stats.max_norm_error,
            "examples": dg.MetadataValue.json(stats.bad_vectors[:SHOWN]),
        },
    )


@dg.asset(
    group_name=GROUP,
    code_version=ENCODER_VERSION,
    kinds={"mlflow"},
    description="The configured encoder registered in the local MLflow registry as the pyfunc "
    "model adrag-encoder (base64 image or text in, unit vector out), one version per encoder; "
    "the alias live names the version of the encoder behind the Milvus alias.",
)
def encoder_model(
    context: dg.AssetExecutionContext, encoder: EncoderResource
) -> dg.MaterializeResult:
    from adrag_assets.embeddings.mlflow_model import register_encoder

    settings = load_settings().model_copy(update={"encoder": encoder.spec})
    reg = register_encoder(settings)
    if reg.random_weights:
        context.log.warning(
            "registered encoder %s has random weights (NOT semantic)", reg.encoder_id
        )
    return dg.MaterializeResult(
        metadata={
            "model_name": reg.name,
            "version": reg.version,
            "model_uri": reg.model_uri,
            "encoder_id": reg.encoder_id,
            "random_weights": reg.random_weights,
            "alias": reg.alias or "",
        }
    )
