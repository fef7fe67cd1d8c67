"""The index follows Delta wherever it is served: a sensor that looks at the Milvus this code
location serves and, when it lacks what ``image_embeddings`` holds for the configured encoder,
starts a run of ``image_index`` (which rebuilds from the table what the collection lacks).

Why a sensor: the cases it covers leave Dagster's own records unchanged. `adrag ingest` into
the Milvus Lite file, then `adrag up` on a fresh `milvus-lite server`; an ingest from another
shell pointed at another index while the stack runs (its run is recorded as materializing
``image_index``, so an eager condition sees nothing to do); a Milvus restarted empty. Only a
look at the served Milvus itself tells, and a sensor is where Dagster looks at the world
outside it. The look is cheap (:func:`adrag_assets.index.follow.index_lag`: a Delta version,
a count from the log's statistics and a few Milvus metadata calls), so it runs every
``ADRAG_SENSOR_INTERVAL`` seconds.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import hashlib
import json
import time

import dagster as dg

from adrag_assets.defs.audit import AUDIT_CHECKS
from adrag_assets.defs.backoff import doubling_backoff
from adrag_assets.defs.resources import EncoderResource, MilvusResource, TablesResource
from adrag_assets.embeddings.spec import EncoderError, EncoderSpec
from adrag_assets.index.follow import index_lag
from adrag_assets.index.milvus import MilvusError, MilvusIndex
from adrag_assets.settings import load_settings

JOB_NAME = "index_sync_job"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
INDEX_KEY = dg.AssetKey("image_index")

index_sync_job = dg.define_asset_job(
    JOB_NAME,
    # The index and its own checks; the audit's full checks keep their schedule.
    selection=dg.AssetSelection.assets("image_index").without_checks()
    | dg.AssetSelection.checks_for_assets("image_index") - dg.AssetSelection.checks(*AUDIT_CHECKS),
    description="Sync the served Milvus collection with image_embeddings (a rebuild when the "
    "collection lacks a recorded Delta version). Started by index_follows_delta.",
    executor_def=dg.in_process_executor,
)


def index_writer_in_flight(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A run in flight that may write the index (its selection holds image_index, or is the
    whole job: unknown, so assumed); it will bring the index up to date, or the next look
    will see what it left."""
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT), limit=50):
        if run.asset_selection is None or INDEX_KEY in run.asset_selection:
            return run
    return None


@dg.sensor(
    job=index_sync_job,
    minimum_interval_seconds=load_settings().sensor_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Looks at the Milvus this deployment serves (ADRAG_MILVUS_URI): when the "
    "configured encoder's collection lacks what image_embeddings holds (missing, never "
    "synced, other row count, synced to an older Delta version), starts index_sync_job. "
    "Skips while a run that writes the index is in flight; a lag a run did not fix is asked "
    "again with a doubling backoff. Interval: ADRAG_SENSOR_INTERVAL seconds.",
)
def index_follows_delta(
    context: dg.SensorEvaluationContext,
    tables: TablesResource,
    encoder: EncoderResource,
    milvus: MilvusResource,
):
    previous = json.loads(context.cursor) if context.cursor else {}
    index = MilvusIndex(milvus.uri, milvus.token, milvus.alias)
    if index.is_lite_file:
        # A Milvus Lite file is one process's at a time: looking would take it from the runs,
        # which write it themselves (the runs and this code location share the URI).
        return dg.SkipReason(
            f"{index.shown_uri} is a Milvus Lite file: the runs that write the tables sync it"
        )
    try:
        encoder_id = EncoderSpec.parse(encoder.spec).encoder_id
    except EncoderError as e:
        return dg.SkipReason(f"no encoder to follow: {e}")
    try:
        lag = index_lag(tables.get(), index, encoder_id)
    except MilvusError as e:
        return dg.SkipReason(f"cannot look at the index ({e}); looking again next tick")
    finally:
        index.close()
    requests = int(previous.get("requests", 0))  # every request ever: the run keys' suffix
    if lag is None:
        context.update_cursor(json.dumps({"requests": requests}))
        return dg.SkipReason(
            f"the index at {index.shown_uri} holds what image_embeddings holds for {encoder_id}"
        )
    running = index_writer_in_flight(context.instance)
    if running is not None:
        return dg.SkipReason(f"{lag}; run {running.run_id} in flight may sync it, waiting")
    attempts = int(previous.get("attempts", 0))
    asked_at = float(previous.get("asked_at", 0))
    s = load_settings()
    wait = doubling_backoff(attempts, s.sensor_interval, s.retry_max_seconds)
    if time.time() - asked_at < wait:
        return dg.SkipReason(
            f"{lag}; {attempts} run(s) asked did not fix it, asking again in "
            f"{wait - (time.time() - asked_at):.0f}s"
        )
    attempts += 1
    requests += 1
    context.update_cursor(
        json.dumps({"attempts": attempts, "asked_at": time.time(), "requests": requests})
    )
    context.log.info("requesting an index sync (attempt %d): %s", attempts, lag)
    key = hashlib.sha256(f"{milvus.uri}|{encoder_id}|{lag}".encode()).hexdigest()[:24]
    return dg.RunRequest(
        # A new key per request: the same lag again (a failed run, a Milvus restarted
        # empty twice) is asked again, never swallowed as a repeat.
        run_key=f"{key}-{requests}",
        tags={"adrag/source": "index_follows_delta", "adrag/attempt": str(attempts)},
    )
