"""Delta maintenance: the job (compact, vacuum, checkpoint), nightly and after large ingests.

The job is an op in the writers' pool, so it never runs beside an ingest. It changes no
rows, so it records *observations* of the tables (files, bytes, versions), not
materializations: nothing downstream re-runs because of it.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.defs.index import ingest_job
from adrag_assets.defs.resources import POOL, MilvusResource, TablesResource
from adrag_assets.index.milvus import PROP_TEXT_VERSION
from adrag_assets.settings import load_settings
from adrag_assets.tables import Tables
from adrag_assets.tables_maintenance import (
    MB,
    TableMaintenance,
    maintain_tables,
    milvus_synced_version,
)

JOB_NAME = "maintenance_job"
# Tables that are assets of the graph; volume_files is written by `images` and shows in
# the run's output metadata only.
OBSERVED = ("images", "rejected_images", "image_embeddings", "photo_text")
VERSION_KEY = "delta_version_after"

_settings = load_settings().maintenance


class MaintenanceConfig(dg.Config):
    """Defaults from ``ADRAG_MAINTENANCE_*``; a run may override them."""

    retention_hours: int = _settings.retention_hours
    max_retention_hours: int = _settings.max_retention_hours
    # Vacuum down to retention_hours even under a change-feed consumer (it then rebuilds).
    ignore_consumers: bool = False


@dg.op(
    pool=POOL,
    description="Compacts every Delta table, vacuums what no change-feed consumer still "
    "reads, checkpoints; records files, bytes and versions per table.",
)
def maintain_delta_tables(
    context: dg.OpExecutionContext,
    config: MaintenanceConfig,
    tables: TablesResource,
    milvus: MilvusResource,
) -> dg.Output[list[dict]]:
    done = maintain_tables(
        tables.get(),
        milvus_synced_version(milvus.get()),
        config.retention_hours,
        config.max_retention_hours,
        config.ignore_consumers,
        log=context.log,
        text_version=milvus_synced_version(milvus.get(), PROP_TEXT_VERSION),
    )
    for m in done:
        if m.table in OBSERVED:
            context.log_event(dg.AssetObservation(asset_key=m.table, metadata=metadata(m)))
    return dg.Output(
        [m.as_dict() for m in done],
        metadata={"tables": dg.MetadataValue.md(summary_markdown(done))},
    )


def metadata(m: TableMaintenance) -> dict:
    b, a = m.before, m.after
    meta = {
        "live_files_before": b.live_files,
        "live_files_after": a.live_files,
        "stored_files_before": b.stored_files,
        "stored_files_after": a.stored_files,
        "bytes_before": b.total_bytes,  # data and log on storage
        "bytes_after": a.total_bytes,
        "live_bytes_after": a.live_bytes,
        "delta_version_before": b.version,
        VERSION_KEY: a.version,
        "compacted_files": m.compacted_files,
        "vacuumed_files": m.vacuumed_files,
        "retention_hours": m.retention_hours if m.retention_hours is not None else "skipped",
        "notes": "; ".join(m.notes) or "",
    }
    if a.photo_bytes is not None:
        meta["photo_bytes"] = a.photo_bytes
        meta["bytes_per_photo_byte"] = (
            round(a.total_bytes / a.photo_bytes, 3) if a.photo_bytes else 0
        )
    return meta


def summary_markdown(done: list[TableMaintenance]) -> str:
    lines = [
        "| table | version | live files | stored files | MB on storage | photo MB |",
        "|---|---|---|---|---|---|",
    ]
    for m in done:
        b, a = m.before, m.after
        photos = f"{a.photo_bytes / MB:.1f}" if a.photo_bytes is not None else ""
        lines.append(
            f"| {m.table} | {b.version} → {a.version} | {b.live_files} → {a.live_files} | "
            f"{b.stored_files} → {a.stored_files} | {b.total_bytes / MB:.1f} → "
            f"{a.total_bytes / MB:.1f} | {photos} |"
        )
    return "\n".join(lines)


@dg.job(
    name=JOB_NAME,
    description="Delta maintenance: compaction, vacuum (keeping what the index has not "
    "synced yet), checkpoints. Nightly (ADRAG_MAINTENANCE_CRON) and after large ingests.",
    tags={"adrag/kind": "maintenance"},
)
def maintenance_job():
    maintain_delta_tables()


maintenance_schedule = dg.ScheduleDefinition(
    name="maintenance_schedule",
    job=maintenance_job,
    cron_schedule=_settings.cron,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs maintenance_job on ADRAG_MAINTENANCE_CRON (default 03:00 daily).",
)


def commits_since_maintenance(instance: dg.DagsterInstance, tables: Tables) -> dict[str, int]:
    """Per observed table, commits since the version the last maintenance left it at (every
    commit since the table's creation if never maintained)."""
    out = {}
    for name in OBSERVED:
        if not tables.exists(name):
            continue
        records = instance.fetch_observations(dg.AssetKey(name), limit=1).records
        last = 0
        if records:
            meta = records[0].asset_observation.metadata
            if VERSION_KEY in meta:
                last = int(meta[VERSION_KEY].value)
        out[name] = max(0, tables.version(name) - last)
    return out


@dg.run_status_sensor(
    name="maintenance_after_ingest",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_job],
    request_job=maintenance_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful ingest_job, starts maintenance_job when a table has "
    "taken ADRAG_MAINTENANCE_AFTER_COMMITS commits (each one a few small files) since the "
    "last maintenance.",
)
def maintenance_after_ingest(context: dg.RunStatusSensorContext, tables: TablesResource):
    threshold = load_settings().maintenance.after_commits
    commits = commits_since_maintenance(context.instance, tables.get())
    due = {name: n for name, n in commits.items() if n >= threshold}
    if not due:
        return dg.SkipReason(
            f"{max(commits.values(), default=0)} commit(s) at most since the last "
            f"maintenance; maintenance after {threshold}"
        )
    context.log.info("maintenance due: %s", due)
    return dg.RunRequest(
        run_key=f"after-{context.dagster_run.run_id}",
        tags={"adrag/commits_since_maintenance": str(max(due.values()))},
    )
