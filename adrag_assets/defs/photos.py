"""Photos in: the raw/ folder (a source), the ``images`` and ``rejected_images`` tables, and
the upload sensor that starts ``ingest_job`` when files change.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import hashlib
import json

import dagster as dg

from adrag_assets.defs.resources import GROUP, POOL, TablesResource, VolumeResource
from adrag_assets.images.sync import sync_images
from adrag_assets.images.thumbnails import thumbnail_markdown
from adrag_assets.settings import load_settings
from adrag_assets.tables import Tables
from adrag_assets.volume import Volume
from adrag_assets.volume import files as vol

THUMBNAILS = 6  # newest photos shown in a materialization's metadata
SHOWN = 10  # examples listed in a failing check's metadata
WARNINGS_SHOWN = 100  # label warnings listed in the metadata (all of them are in the log)

raw_photos = dg.AssetSpec(
    "raw_photos",
    group_name=GROUP,
    description="Photos people upload to raw/ in the storage volume (any depth), with their "
    "labels.csv and .json/.txt sidecars. Not materialized by Dagster: it is the source.",
    kinds={"files"},
)


@dg.multi_asset(
    pool=POOL,
    specs=[
        dg.AssetSpec(
            "images",
            deps=[raw_photos],
            group_name=GROUP,
            description="Delta table: one row per distinct photo (image_id = sha256 of the "
            "bytes), with path, bytes, format, size, dimensions, mtime and labels.",
            kinds={"delta"},
        ),
        dg.AssetSpec(
            "rejected_images",
            deps=[raw_photos],
            group_name=GROUP,
            description="Delta table: files under raw/ that are not usable photos, with the "
            "reason (corrupt, truncated, empty, not an image, unreadable, too large, not a "
            "regular file, a symlink out of the volume, a name that is not UTF-8).",
            kinds={"delta"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "every_file_accounted_for",
            asset="images",
            description="Every file under raw/ is an image, a rejected file or a sidecar "
            "(FIFOs, sockets, devices and symlinks are listed too, and count as rejected).",
        )
    ],
)
def images(context: dg.AssetExecutionContext, volume: VolumeResource, tables: TablesResource):
    t = tables.get()
    stats = sync_images(volume.get(), t, log=context.log)
    # Only the newest few rows' bytes are read for thumbnails, never the whole table.
    newest = f"SELECT path, bytes FROM images ORDER BY ingested_at DESC, path LIMIT {THUMBNAILS}"
    added = t.query("images", newest).read_all() if stats.added else None
    meta = {
        "files": stats.files,
        "files_read": stats.files_read,
        "added": stats.added,
        "updated": stats.updated,
        "deleted": stats.deleted,
        "unchanged": stats.unchanged,
        "rejected": stats.rejected,
        "newly_rejected": stats.newly_rejected,
        "dagster/row_count": stats.images,
        "delta_version": stats.version,
        "dagster/uri": t.uri("images"),
        "label_warnings": dg.MetadataValue.json(shown_warnings(stats.label_warnings)),
    }
    if added is not None:
        meta["sample"] = dg.MetadataValue.md(
            thumbnail_markdown(
                list(
                    zip(
                        added.column("path").to_pylist(),
                        added.column("bytes").to_pylist(),
                        strict=True,
                    )
                )
            )
        )
    context.log.info(
        "images: %d added, %d updated, %d deleted, %d unchanged, %d rejected in total",
        stats.added,
        stats.updated,
        stats.deleted,
        stats.unchanged,
        stats.rejected,
    )
    yield dg.MaterializeResult(asset_key="images", metadata=meta)
    yield dg.MaterializeResult(
        asset_key="rejected_images",
        metadata={
            "dagster/row_count": stats.rejected,
            "newly_rejected": stats.newly_rejected,
            "rejected": dg.MetadataValue.md(rejected_markdown(t)),
        },
    )
    yield coverage(volume.get(), t)


def shown_warnings(warnings: list[str]) -> list[str]:
    if len(warnings) <= WARNINGS_SHOWN:
        return warnings
    return [
        *warnings[:WARNINGS_SHOWN],
        f"… and {len(warnings) - WARNINGS_SHOWN} more (see the log)",
    ]


def rejected_markdown(tables: Tables) -> str:
    rows = tables.read("rejected_images", ["path", "reason"]).to_pylist()
    if not rows:
        return "_none_"
    lines = [f"- `{r['path']}`: {r['reason']}" for r in rows[:50]]
    if len(rows) > 50:
        lines.append(f"- … and {len(rows) - 50} more")
    return "\n".join(lines)


def coverage(volume: Volume, tables: Tables) -> dg.AssetCheckResult:
    photos, sidecars = vol.scan(volume)
    known = set(tables.read("volume_files", ["path"]).column("path").to_pylist())
    known |= set(tables.read("rejected_images", ["path"]).column("path").to_pylist())
    missing = sorted(p.path for p in photos if p.path not in known)
    return dg.AssetCheckResult(
        asset_key="images",
        check_name="every_file_accounted_for",
        passed=not missing,
        metadata={
            "photo_files": len(photos),
            "sidecars": len(sidecars),
            "unaccounted": len(missing),
            "examples": dg.MetadataValue.json(missing[:SHOWN]),
        },
    )


# -- the upload sensor -----------------------------------------------------------------------
# The pipeline's own tables are the record of what was ingested (``volume_files`` and
# ``rejected_images`` hold each file's size and mtime), so the sensor compares the volume with
# them, not with a copy of its own. Its cursor only remembers the pending changes it saw on the
# previous tick: a change is acted on once it looks the same twice in a row, so a file still
# being written waits, and a burst of uploads becomes one run.

JOB_NAME = "ingest_job"
SIDECARS = "<sidecars>"  # the key under which a change of any sidecar is tracked
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def pending_changes(volume: Volume, tables: Tables) -> tuple[dict[str, str], str]:
    """({path: "size:mtime_ns"} of photo files the tables don't have as they are, "" = gone;
    one digest of every sidecar's name, size and mtime, since labels live in them)."""
    photos, sidecars = vol.scan(volume)
    known = {
        r["path"]: f"{r['size']}:{r['mtime_ns']}"
        for name in ("volume_files", "rejected_images")
        for r in tables.read(name, ["path", "size", "mtime_ns"]).to_pylist()
    }
    now = {p.path: f"{p.size}:{p.mtime_ns}" for p in photos}
    changes = {p: s for p, s in now.items() if known.get(p) != s}
    changes.update({p: "" for p in known if p not in now})
    digest = hashlib.sha256()
    for st in sidecars:
        digest.update(f"{st.path}:{st.size}:{st.mtime_ns}\n".encode())
    return changes, digest.hexdigest()[:16]


@dg.sensor(
    job_name=JOB_NAME,
    minimum_interval_seconds=load_settings().sensor_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts ingest_job when photos under raw/ are added, changed or deleted "
    "(once they stop changing between two looks). Interval: ADRAG_SENSOR_INTERVAL seconds.",
)
def raw_photos_sensor(
    context: dg.SensorEvaluationContext, volume: VolumeResource, tables: TablesResource
):
    previous = json.loads(context.cursor) if context.cursor else {}
    changes, sidecars = pending_changes(volume.get(), tables.get())
    synced = previous.get("synced_sidecars")
    if synced is None and not changes:
        synced = sidecars  # first look at a volume whose photos are all ingested already
    if sidecars != synced:
        changes[SIDECARS] = sidecars
    if not changes:
        context.update_cursor(json.dumps({"synced_sidecars": synced}))
        return dg.SkipReason("no new, changed or deleted files under raw/")

    # Act on a change only once it looks the same as on the previous tick.
    looked = previous.get("look", {})
    settling = sorted(p for p, s in changes.items() if looked.get(p) != s)
    cursor = {"synced_sidecars": synced, "look": changes}
    if settling:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(
            f"{len(settling)} change(s) new since the last look or still being written "
            f"(e.g. {settling[0]}); waiting one tick for them to settle"
        )

    in_flight = context.instance.get_runs(
        dg.RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT), limit=1
    )
    if in_flight:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(
            f"skipping: run {in_flight[0].run_id} is in flight; its tables are updated first, "
            f"then the next tick picks up these {len(changes)} change(s)"
        )

    key = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()
    present = sum(1 for p, s in changes.items() if s and p != SIDECARS)
    # Same changes, same run_key: a repeated tick before the run shows up adds no run.
    context.update_cursor(json.dumps({**cursor, "synced_sidecars": sidecars}))
    context.log.info("requesting ingest for %d changed file(s)", len(changes))
    return dg.RunRequest(
        run_key=key[:32],
        tags={"adrag/changes": str(len(changes)), "adrag/present_files": str(present)},
    )
