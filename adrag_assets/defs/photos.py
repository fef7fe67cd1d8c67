"""Photos in: the raw/ folder (a source), the ``images`` and ``rejected_images`` tables, and
the upload sensor that starts ``ingest_job`` when files change.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import hashlib
import json
import time
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from adrag_assets.defs.backoff import doubling_backoff
from adrag_assets.defs.resources import GROUP, POOL, TablesResource, VolumeResource
from adrag_assets.images.decode import MAX_PHOTO_BYTES
from adrag_assets.images.sync import IngestOptions, full_scan_needed, rows_where_in, sync_images
from adrag_assets.images.thumbnails import thumbnail_markdown
from adrag_assets.settings import load_settings
from adrag_assets.tables import Tables
from adrag_assets.volume import Volume
from adrag_assets.volume import files as vol

THUMBNAILS = 6  # newest photos shown in a materialization's metadata
SHOWN = 10  # examples listed in a failing check's metadata
WARNINGS_SHOWN = 100  # label warnings listed in the metadata (all of them are in the log)


class ImagesConfig(dg.Config):
    """What one ``images`` run looks at. The upload sensor fills ``paths``; a run without
    config (``adrag ingest``, a materialization from the UI) scans the whole volume."""

    paths: list[str] | None = Field(
        None,
        description="Photo paths under raw/ added, changed or deleted since the tables were "
        "synced (the upload sensor's change set): only these are looked at. Empty/None: a "
        "full scan, which also reconciles anything a change set missed.",
    )


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
            "bytes), with path, bytes, format, size, dimensions, mtime, EXIF taken-at and "
            "camera, and the rendition the model reads (originals' bytes only with "
            "ADRAG_STORE_ORIGINALS=on). Its labels are in the photo_labels table beside it, "
            "so a relabel rewrites no photo bytes.",
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
            description="Every file the run looked at is an image, a rejected file or a "
            "sidecar (FIFOs, sockets, devices and symlinks count as rejected): on a change-set "
            "run its paths (each in volume_files or rejected_images, or gone from the volume "
            "and both), on a full scan every file under raw/. `volume_audit` checks all.",
        )
    ],
)
def images(
    context: dg.AssetExecutionContext,
    config: ImagesConfig,
    volume: VolumeResource,
    tables: TablesResource,
):
    t = tables.get()
    s = load_settings()
    options = IngestOptions(s.rendition_px, s.store_originals, s.decode_workers)
    stats = sync_images(
        volume.get(), t, log=context.log, paths=config.paths or None, options=options
    )
    # Thumbnails of the newest few rows: sorted on light columns, then their renditions read
    # by a filtered query (sorting with the picture columns would read every row's).
    newest = f"SELECT path FROM images ORDER BY ingested_at DESC, path LIMIT {THUMBNAILS}"
    added = None
    if stats.added:
        shown = t.query("images", newest).read_all().column("path").to_pylist()
        # Made from the renditions ingest just wrote: no original is read again.
        small = {
            r["path"]: r["rendition"]
            for r in rows_where_in(t, "images", ["path", "rendition"], "path", shown)
        }
        added = [
            (p, b) for p in shown if (b := small.get(p) or photo_bytes(volume.get(), p)) is not None
        ]
    meta = {
        "scope": stats.scope,
        "changed_paths": stats.paths,
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
        "photo_labels_version": t.version("photo_labels") if t.exists("photo_labels") else -1,
        "dagster/uri": t.uri("images"),
        "label_warnings": dg.MetadataValue.json(shown_warnings(stats.label_warnings)),
        "label_warning_count": len(stats.label_warnings),
    }
    if added is not None:
        meta["sample"] = dg.MetadataValue.md(thumbnail_markdown(added))
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
    if stats.scope == "changes":
        yield change_set_coverage(volume.get(), t, config.paths or [])
    else:
        yield coverage(volume.get(), t)


def photo_bytes(volume: Volume, path: str) -> bytes | None:
    try:
        return volume.read_bytes(path, max_bytes=MAX_PHOTO_BYTES)
    except (OSError, ValueError):  # gone or changed since the run: no thumbnail
        return None


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


def coverage(
    volume: Volume, tables: Tables, check_name: str = "every_file_accounted_for"
) -> dg.AssetCheckResult:
    """Every photo file under raw/ is in volume_files or rejected_images, and neither table
    lists a file the volume no longer has."""
    photos, sidecars = vol.scan(volume)
    on_disk = {p.path for p in photos}
    known = set(tables.read("volume_files", ["path"]).column("path").to_pylist())
    known |= set(tables.read("rejected_images", ["path"]).column("path").to_pylist())
    missing = sorted(on_disk - known)
    stale = sorted(known - on_disk)
    return dg.AssetCheckResult(
        asset_key="images",
        check_name=check_name,
        passed=not missing and not stale,
        metadata={
            "photo_files": len(photos),
            "sidecars": len(sidecars),
            "unaccounted": len(missing),
            "stale_rows": len(stale),
            "examples": dg.MetadataValue.json((missing + stale)[:SHOWN]),
        },
    )


def change_set_coverage(volume: Volume, tables: Tables, paths: list[str]) -> dg.AssetCheckResult:
    """The run's own paths: each on the volume is in volume_files or rejected_images, and
    each gone from the volume is in neither."""
    paths = sorted({volume.relative(p) for p in paths})
    known = {
        r["path"]
        for name in ("volume_files", "rejected_images")
        for r in rows_where_in(tables, name, ["path"], "path", paths)
    }
    present = {p for p in paths if vol.stat_listed(volume, p) is not None}
    missing = sorted(present - known)
    stale = sorted(known - present)
    return dg.AssetCheckResult(
        asset_key="images",
        check_name="every_file_accounted_for",
        passed=not missing and not stale,
        metadata={
            "scope": "changes",
            "changed_paths": len(paths),
            "on_volume": len(present),
            "unaccounted": len(missing),
            "stale_rows": len(stale),
            "examples": dg.MetadataValue.json((missing + stale)[:SHOWN]),
        },
    )


@dg.asset_check(
    asset="images",
    name="volume_audit",
    blocking=False,
    description="The whole volume against the tables: every photo file under raw/ is in "
    "volume_files or rejected_images and no row names a file that is gone. Upload runs check "
    "only their own paths; this is the full look, for a scheduled audit job.",
)
def volume_audit(volume: VolumeResource, tables: TablesResource) -> dg.AssetCheckResult:
    return coverage(volume.get(), tables.get(), check_name="volume_audit")


# -- the upload sensor -----------------------------------------------------------------------
# The pipeline's own tables are the record of what was ingested (``volume_files`` and
# ``rejected_images`` hold each file's size and mtime), so the sensor compares the volume with
# them, not with a copy of its own. A change is acted on in the tick that first sees it when
# the file looks finished (size not 0, mtime at least ADRAG_SETTLE_SECONDS old); a younger one
# waits one tick and goes once it looks the same twice, so a file still being written waits.
# Its cursor remembers the pending changes of the previous look. The run gets the change set
# in its config, so it reads only those paths; a sidecar change (labels of any photo may
# change) or a set too large for the run record makes it a full scan.

JOB_NAME = "ingest_job"
SIDECARS = "<sidecars>"  # the key under which a change of any sidecar is tracked
CHANGE_SET_TAG = "adrag/change_set"  # the digest of the changes a run was asked for
WILL_RETRY_TAG = "dagster/will_retry"  # set on a failed run Dagster's run retries will redo
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def pending_changes(volume: Volume, tables: Tables) -> tuple[dict[str, str], str, int]:
    """({path: "size:mtime_ns"} of photo files the tables don't have as they are, "" = gone;
    one digest of every sidecar's name, size and mtime, since labels live in them; the newest
    sidecar's mtime_ns)."""
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
    newest = max((st.mtime_ns for st in sidecars), default=0)
    return changes, digest.hexdigest()[:16], newest


def finished(now: str, before: str | None, size: int, mtime_ns: int, settle_ns: int) -> bool:
    """Whether a change looks complete: gone (""), the same as on the previous look, or, seen
    for the first time, not empty and untouched for the settle time. Seen before as something
    else: still being written."""
    if now == "" or now == before:
        return True
    if before is not None:
        return False
    return size > 0 and time.time_ns() - mtime_ns >= settle_ns


def ingest_request(ready: dict[str, str]) -> dg.RunRequest:
    """The run for these finished changes: their paths in the ``images`` config, or none
    (a full scan) when a sidecar changed or the set is too large to pass. Its run key is the
    change set's digest and attempt 0 (see :func:`asked_again`)."""
    paths = sorted(p for p in ready if p != SIDECARS)
    why = "a sidecar or labels.csv changed" if SIDECARS in ready else full_scan_needed(paths)
    config = {} if why else {"ops": {"images": {"config": {"paths": paths}}}}
    digest = hashlib.sha256(json.dumps(ready, sort_keys=True).encode()).hexdigest()[:32]
    present = sum(1 for p, s in ready.items() if s and p != SIDECARS)
    return dg.RunRequest(
        # Same changes, same run_key: a repeated tick before the run shows up adds no run.
        run_key=f"{digest}-0",
        run_config=config,
        tags={
            CHANGE_SET_TAG: digest,
            "adrag/changes": str(len(ready)),
            "adrag/present_files": str(present),
            "adrag/scope": "full" if why else "changes",
        },
    )


@dataclass(frozen=True)
class Attempts:
    """The finished ingest runs of one change set: how many, how many failed in a row at the
    end, and the last failure (its run id and when it ended, epoch seconds)."""

    runs: int = 0
    failures: int = 0
    last_failed: str = ""
    last_end: float = 0.0
    retrying: bool = False  # the last failure is one Dagster's own run retries will redo

    def wait(self, base: float, cap: float, now: float) -> float:
        """Seconds still to wait before asking again: ``base`` after the first failure,
        doubling with each further one, at most ``cap``."""
        if not self.failures:
            return 0.0
        return max(0.0, self.last_end + doubling_backoff(self.failures, base, cap) - now)


def attempts_of(instance: dg.DagsterInstance, digest: str) -> Attempts:
    """Read from the instance the finished runs that carried this change set."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=JOB_NAME, tags={CHANGE_SET_TAG: digest}, statuses=FINISHED)
    )
    failures = 0
    for r in records:  # newest first: the failures since the last success
        if r.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
    last = records[0] if failures else None
    return Attempts(
        runs=len(records),
        failures=failures,
        last_failed=last.dagster_run.run_id if last else "",
        last_end=(last.end_time or last.update_timestamp.timestamp()) if last else 0.0,
        retrying=bool(last) and last.dagster_run.tags.get(WILL_RETRY_TAG) == "true",
    )


def asked_again(
    instance: dg.DagsterInstance, request: dg.RunRequest, what: str
) -> dg.RunRequest | dg.SkipReason:
    """The request of a change set, keyed by its attempt: a set whose run failed gets a new
    run key (Dagster drops a request whose key was used), once its backoff has passed."""
    digest = request.tags[CHANGE_SET_TAG]
    attempts = attempts_of(instance, digest)
    s = load_settings()
    wait = attempts.wait(s.retry_base_seconds, s.retry_max_seconds, time.time())
    if attempts.retrying:
        return dg.SkipReason(
            f"the ingest of {what} failed in run {attempts.last_failed}; Dagster's run "
            "retries will run it again"
        )
    if wait > 0:
        return dg.SkipReason(
            f"the ingest of {what} failed {attempts.failures} time(s), last in run "
            f"{attempts.last_failed}; asking again in {wait:.0f}s (backoff, doubling per "
            f"failure up to {s.retry_max_seconds:.0f}s)"
        )
    if not attempts.runs:
        return request
    return dg.RunRequest(
        run_key=f"{digest}-{attempts.runs}",
        run_config=request.run_config,
        tags={**request.tags, "adrag/attempt": str(attempts.runs + 1)},
    )


def failed_change_set(instance: dg.DagsterInstance) -> dg.RunRequest | None:
    """The change set of the newest finished ingest run when it failed for good (Dagster's
    own run retries done): its steps may have written part of it (the tables, not the index)
    so the volume looks in sync while the index is behind. The same config runs again."""
    records = instance.get_run_records(dg.RunsFilter(job_name=JOB_NAME, statuses=FINISHED), limit=1)
    if not records:
        return None
    run = records[0].dagster_run
    if run.status != dg.DagsterRunStatus.FAILURE or run.tags.get(WILL_RETRY_TAG) == "true":
        return None
    digest = run.tags.get(CHANGE_SET_TAG)
    if digest is None:  # a run not started by this sensor (the UI, `adrag ingest`)
        digest = f"run-{run.run_id[:8]}"
    tags = {k: v for k, v in run.tags.items() if k.startswith("adrag/")}
    return dg.RunRequest(
        run_key=f"{digest}-0",
        run_config=run.run_config,
        tags={**tags, CHANGE_SET_TAG: digest},
    )


@dg.sensor(
    job_name=JOB_NAME,
    minimum_interval_seconds=load_settings().sensor_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts ingest_job for the photos under raw/ that were added, changed or "
    "deleted, passing their paths to the run (a sidecar change: a full scan). A file is taken "
    "once it looks finished (ADRAG_SETTLE_SECONDS old, or unchanged between two looks). "
    "Interval: ADRAG_SENSOR_INTERVAL seconds.",
)
def raw_photos_sensor(
    context: dg.SensorEvaluationContext, volume: VolumeResource, tables: TablesResource
):
    previous = json.loads(context.cursor) if context.cursor else {}
    changes, sidecars, sidecars_mtime = pending_changes(volume.get(), tables.get())
    synced = previous.get("synced_sidecars")
    if synced is None and not changes:
        synced = sidecars  # first look at a volume whose photos are all ingested already
    if sidecars != synced:
        changes[SIDECARS] = sidecars
    if not changes:
        context.update_cursor(json.dumps({"synced_sidecars": synced}))
        retry = failed_change_set(context.instance)
        if retry is None:
            return dg.SkipReason("no new, changed or deleted files under raw/")
        if in_flight := context.instance.get_runs(
            dg.RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT), limit=1
        ):
            return dg.SkipReason(f"skipping: run {in_flight[0].run_id} is in flight")
        request = asked_again(context.instance, retry, "the last change set")
        if isinstance(request, dg.RunRequest):
            context.log.info(
                "the last ingest run failed with the volume in sync; asking again (%s)",
                request.run_key,
            )
        return request

    looked = previous.get("look", {})
    settle_ns = int(load_settings().settle_seconds * 1e9)

    def size_and_mtime(path: str, sig: str) -> tuple[int, int]:
        if path == SIDECARS:  # a digest: a sidecar may be empty; its newest mtime settles
            return 1, sidecars_mtime
        size, mtime_ns = sig.split(":") if sig else (0, 0)
        return int(size), int(mtime_ns)

    ready = {
        p: s
        for p, s in changes.items()
        if finished(s, looked.get(p), *size_and_mtime(p, s), settle_ns)
    }
    cursor = {"synced_sidecars": synced, "look": changes}
    if SIDECARS in ready and len(ready) < len(changes):
        ready = {}  # a full scan would read the files still being written: they go together
    if not ready:
        context.update_cursor(json.dumps(cursor))
        first = sorted(changes, key=lambda p: p == SIDECARS)[0]
        return dg.SkipReason(
            f"{len(changes)} change(s) still being written or younger than the settle time "
            f"(e.g. {first}); waiting one tick for them to settle"
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

    request = asked_again(context.instance, ingest_request(ready), f"{len(ready)} change(s)")
    context.update_cursor(json.dumps(cursor))
    if isinstance(request, dg.SkipReason):
        return request
    if SIDECARS in ready:
        cursor["synced_sidecars"] = sidecars
        context.update_cursor(json.dumps(cursor))
    waiting = len(changes) - len(ready)
    context.log.info(
        "requesting ingest (%s) for %d changed file(s)%s",
        request.tags["adrag/scope"],
        len(ready),
        f"; {waiting} still settling" if waiting else "",
    )
    return request
