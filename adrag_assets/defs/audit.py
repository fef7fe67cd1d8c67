"""The audit: the full checks an upload's run leaves out, on a schedule of their own.

An ingest run checks what it wrote (its vectors, its ids) and cheap totals. The audit reads
everything once: every vector of the configured encoder (finite, unit norm), and every id of
its collection against the table's (drift repaired, as the heal does, and reported). It runs
nightly (``ADRAG_AUDIT_CRON``), from the UI, or with ``adrag audit``.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.defs.embeddings import SHOWN
from adrag_assets.defs.photos import volume_audit
from adrag_assets.defs.resources import POOL, EncoderResource, MilvusResource, TablesResource
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.embeddings.sync import audit_vectors
from adrag_assets.index.sync import audit_index
from adrag_assets.settings import load_settings
from adrag_assets.tables import TABLES, TableUnreadable


def _encoder_id(encoder: EncoderResource) -> str:
    # The id alone: the audit reads vectors, it never loads the model.
    return EncoderSpec.parse(encoder.spec).encoder_id


@dg.asset_check(
    asset="image_embeddings",
    name="audit_all_vectors",
    description="Every vector of the configured encoder is finite and of unit norm (streamed "
    "in batches).",
)
def audit_all_vectors(
    context: dg.AssetCheckExecutionContext, tables: TablesResource, encoder: EncoderResource
) -> dg.AssetCheckResult:
    eid = _encoder_id(encoder)
    audit = audit_vectors(tables.get(), eid, log=context.log)
    if audit.bad_count:
        context.log.warning(
            "audit: %d of %d vectors of %s are bad", audit.bad_count, audit.vectors, eid
        )
    return dg.AssetCheckResult(
        passed=audit.bad_count == 0,
        metadata={
            "encoder_id": eid,
            "vectors": audit.vectors,
            "bad": audit.bad_count,
            "max_norm_error": audit.max_norm_error,
            "examples": dg.MetadataValue.json(audit.bad_vectors[:SHOWN]),
        },
    )


@dg.asset_check(
    asset="image_index",
    name="audit_all_ids",
    # A repair writes to the collection: one writer at a time, like the ingest.
    pool=POOL,
    description="Every id of the configured encoder's collection against image_embeddings' "
    "(counts and an order-independent digest); missing ids are upserted and ghosts deleted, "
    "then compared again. Passes when the index matches after repair; metadata says what "
    "drift was found.",
)
def audit_all_ids(
    context: dg.AssetCheckExecutionContext,
    tables: TablesResource,
    encoder: EncoderResource,
    milvus: MilvusResource,
) -> dg.AssetCheckResult:
    eid = _encoder_id(encoder)
    found, stats = audit_index(tables.get(), milvus.get(), eid, log=context.log)
    after = stats.comparison
    if not found.matches:
        context.log.warning(
            "audit: index %s had drifted (%d missing, %d ghosts, %d vs %d rows); repaired",
            stats.collection,
            len(found.missing),
            len(found.ghosts),
            found.index_rows,
            found.table_rows,
        )
    return dg.AssetCheckResult(
        passed=after.matches,
        metadata={
            "collection": stats.collection,
            "table_rows": after.table_rows,
            "index_rows": after.index_rows,
            "table_digest": after.table_digest,
            "index_digest": after.index_digest,
            "found_missing": len(found.missing),
            "found_ghosts": len(found.ghosts),
            "repaired": stats.repaired,
            "examples": dg.MetadataValue.json((found.missing + found.ghosts)[:SHOWN]),
        },
    )


@dg.asset_check(
    asset="images",
    name="audit_tables_open",
    description="Every Delta table adrag keeps opens (a damaged log entry fails every run "
    "that reads it; the other checks only read the tables they audit).",
)
def audit_tables_open(
    context: dg.AssetCheckExecutionContext, tables: TablesResource
) -> dg.AssetCheckResult:
    t = tables.get()
    problems: dict[str, str] = {}
    for name in TABLES:
        try:
            if t.exists(name):
                t.open(name)
        except TableUnreadable as e:
            problems[name] = str(e)
            context.log.error("audit: %s", e)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "tables": dg.MetadataValue.json({n: problems.get(n, "opens") for n in TABLES}),
            "unreadable": len(problems),
        },
    )


# The photos side's volume check joins this list.
AUDIT_CHECKS = [audit_all_vectors, audit_all_ids, volume_audit, audit_tables_open]

audit_job = dg.define_asset_job(
    "audit_job",
    selection=dg.AssetSelection.checks(*AUDIT_CHECKS),
    description="The full audit: every vector, every id of the index (repaired), not on "
    "every upload.",
    executor_def=dg.in_process_executor,
)

audit_schedule = dg.ScheduleDefinition(
    name="audit_schedule",
    job=audit_job,
    cron_schedule=load_settings().audit_cron,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
