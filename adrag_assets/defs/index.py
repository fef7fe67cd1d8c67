"""The index: the configured encoder's Milvus collection behind the alias, the job that runs
the whole photo pipeline, and the sensor that re-embeds on an encoder change.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.defs.audit import AUDIT_CHECKS
from adrag_assets.defs.embeddings import ENCODER_VERSION
from adrag_assets.defs.evaluation import quality_gate_check, skipped_gate
from adrag_assets.defs.resources import GROUP, POOL, EncoderResource, MilvusResource, TablesResource
from adrag_assets.embeddings.mlflow_model import LIVE_ALIAS, MODEL_NAME, follow_live_encoder
from adrag_assets.index.compare import IdComparison
from adrag_assets.index.sync import activate, sync_index
from adrag_assets.redact import redact

SHOWN = 10  # examples listed in a failing check's metadata


def _eager_without_words() -> dg.AutomationCondition:
    """Eager, except that photo_text never materialized (OCR added to an existing library,
    a run of the embeddings alone) does not hold the index back: its words are optional."""
    ac = dg.AutomationCondition
    return ac.eager().replace(
        "any_deps_missing",
        ac.any_deps_missing().ignore(dg.AssetSelection.assets("photo_text")),
    )


@dg.asset(
    # photo_text: a change in the words read in photos re-upserts those photos' BM25 text.
    deps=["image_embeddings", "photo_text"],
    pool=POOL,
    code_version=ENCODER_VERSION,
    automation_condition=_eager_without_words() | dg.AutomationCondition.code_version_changed(),
    group_name=GROUP,
    kinds={"milvus"},
    description="Milvus collection of the configured encoder's vectors, synced from "
    "image_embeddings' change feed; the alias names the live collection. Unreadable Milvus "
    "data is moved aside and rebuilt, and row counts that drifted are repaired in the same run.",
    check_specs=[
        # Blocking: a materialization whose index still differs after repair fails the run.
        dg.AssetCheckSpec(
            "index_matches_embeddings",
            asset="image_index",
            blocking=True,
            description="The collection holds the table's ids for the encoder, after any "
            "repair: row counts plus the ids this run wrote or deleted, or (after a rebuild, "
            "or when those differ) an order-independent digest of every id. The audit job "
            "compares every id on its schedule.",
        ),
        # Blocking: a new encoder worse than the live one keeps the alias and stops downstream.
        dg.AssetCheckSpec("quality_gate", asset="image_index", blocking=True),
    ],
)
def image_index(
    context: dg.AssetExecutionContext,
    tables: TablesResource,
    encoder: EncoderResource,
    milvus: MilvusResource,
) -> dg.MaterializeResult:
    enc = encoder.get()
    t, index = tables.get(), milvus.get()
    stats = sync_index(t, index, enc.encoder_id, encoder.spec, enc.dim, log=context.log)
    check = index_matches(stats.comparison)
    live_before = index.live_collection()
    dropped: list[str] = []
    registry: dict[str, str] = {}
    gate = quality_gate_check(context, t, index, enc, stats.collection) if check.passed else None
    if gate is not None and gate.passed:
        dropped = activate(index, stats.collection, milvus.keep_old_collections)
        if live_before != stats.collection:
            if live_before is not None:
                context.log.info(
                    "alias %s moved from %s to %s", index.alias, live_before, stats.collection
                )
            # Only when the alias moved: an unmoved alias needs no change in MLflow, and
            # importing MLflow costs a few seconds an incremental run should not pay.
            registry["encoder_model"] = follow_in_registry(context, enc.encoder_id)
    elif gate is None:
        context.log.error(
            "index still differs from image_embeddings after repair: alias %s stays on %s",
            index.alias,
            live_before or "nothing",
        )
    return dg.MaterializeResult(
        metadata={
            "collection": stats.collection,
            "alias": index.alias,
            "encoder_id": enc.encoder_id,
            "encoder": enc.label,
            "mode": stats.mode,
            "repaired": stats.repaired,
            "healed": "; ".join(stats.healed) or "nothing to heal",
            "upserted": stats.upserted,
            "deleted": stats.deleted,
            "dagster/row_count": stats.rows,
            "synced_delta_version": stats.synced_version,
            "live_collection": index.live_collection() or "",
            "dropped_collections": dg.MetadataValue.json(dropped),
            "milvus_uri": index.shown_uri,
            **registry,
        },
        check_results=[check, gate or skipped_gate()],
    )


def follow_in_registry(context: dg.AssetExecutionContext, encoder_id: str) -> str:
    """Move the MLflow alias ``live`` to the registered version of the live encoder; its
    model URI, or "" when that encoder is not registered or MLflow failed.

    MLflow is a bystander here: whatever goes wrong with it, the index run goes on.
    """
    try:
        version = follow_live_encoder(encoder_id)
    except Exception as e:
        context.log.warning(
            "MLflow: could not point %s@%s at encoder %s (%s); the index is live regardless",
            MODEL_NAME,
            LIVE_ALIAS,
            encoder_id,
            redact(f"{type(e).__name__}: {e}"),
        )
        return ""
    if version is None:
        return ""
    context.log.info("MLflow: %s@%s is version %s", MODEL_NAME, LIVE_ALIAS, version)
    return f"models:/{MODEL_NAME}/{version}"


def index_matches(
    comparison: IdComparison, check_name: str = "index_matches_embeddings"
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=comparison.matches,
        metadata={
            "scope": comparison.scope,
            "table_rows": comparison.table_rows,
            "index_rows": comparison.index_rows,
            "table_digest": comparison.table_digest,
            "index_digest": comparison.index_digest,
            "missing_from_index": len(comparison.missing),
            "extra_in_index": len(comparison.ghosts),
            "examples": dg.MetadataValue.json((comparison.missing + comparison.ghosts)[:SHOWN]),
        },
    )


ingest_job = dg.define_asset_job(
    "ingest_job",
    # The audit's full checks (every file, vector and id) run on their own schedule, never
    # on an upload: an asset selection would otherwise take in every check of its assets.
    # photo_text is not in it: OCR costs ~13x the model a photo, and new photos should be
    # searchable without waiting for it. Its eager condition runs it after each ingest, and
    # image_index's then adds the words (only the photos whose words changed).
    selection=dg.AssetSelection.assets("images", "image_embeddings", "image_index")
    .required_multi_asset_neighbors()
    .without_checks()
    | dg.AssetSelection.checks_for_assets("images", "image_embeddings", "image_index")
    - dg.AssetSelection.checks(*AUDIT_CHECKS),
    description="Bring raw/ into Delta, embed what is new, sync the Milvus index (text in "
    "photos follows, by automation).",
    # One process for the whole run: the model loads once, not once per step.
    executor_def=dg.in_process_executor,
)

# One automation sensor over every asset: each asset that has an automation condition
# (image_embeddings, image_index, near_duplicates, retrieval_eval) is evaluated by it, and
# Dagster then creates no default sensor (which would start STOPPED). It runs by default, so
# new images, a new encoder (code version) or stale vectors re-embed and re-index, and what
# follows the index is refreshed, with nobody clicking.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "adrag_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
