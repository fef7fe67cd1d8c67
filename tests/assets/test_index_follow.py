"""The index follows Delta: ``index_follows_delta`` evaluated tick by tick against a real
`milvus-lite server` and real tables, and the run it asks for executed on a real instance.

The tables are ingested into the Milvus Lite file first (what `adrag ingest` does by
default); the server, as `adrag up` starts it, is empty. The sensor must see that and its
run must fill the server from Delta; later drift (a dropped collection, rows added through
the file) is seen again; nothing is asked while a run that writes the index is in flight, and
a lag a run did not fix is asked again after a backoff, under a new run key.
"""

from __future__ import annotations

import json
import shutil
import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from adrag_assets.defs.backoff import doubling_backoff
from adrag_assets.defs.index_follow import JOB_NAME, index_follows_delta
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.embeddings.spec import EncoderSpec
from adrag_assets.index.follow import index_lag
from adrag_assets.index.milvus import MilvusIndex, collection_name
from adrag_assets.instance import dagster_instance
from adrag_assets.settings import Settings, load_settings
from tests.support.app_home import _start_milvus, stop
from tests.support.data import pets_images
from tests.support.helpers import index_for, run_pipeline, tables_for


@pytest.fixture
def server(settings: Settings, tmp_path):
    proc, port = _start_milvus(tmp_path / "milvus-server", tmp_path / "milvus.log")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def add_photos(settings: Settings, photos) -> None:
    for p in photos:
        shutil.copy(p, settings.raw_dir / p.name)


class Ticker:
    """Evaluates the sensor like the daemon does: each tick starts from the stored cursor."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance):
        self.settings, self.instance, self.cursor = settings, instance, None

    def tick(self):
        resources = resources_from_settings(self.settings)
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={k: resources[k] for k in ("tables", "encoder", "milvus")},
        ) as ctx:
            result = index_follows_delta(ctx)
            self.cursor = ctx.cursor
        return result


def run_requested(instance: dg.DagsterInstance, monkeypatch, server: str, request) -> None:
    """Execute the job the sensor names, from the code location, as the daemon would."""
    monkeypatch.setenv("ADRAG_MILVUS_URI", server)
    from adrag_assets.definitions import defs

    job = defs().resolve_job_def(JOB_NAME)
    result = job.execute_in_process(instance=instance, tags=request.tags)
    assert result.success


def test_an_empty_server_is_filled_from_delta_and_drift_is_seen_again(
    settings, instance, server, monkeypatch
):
    photos = sorted(pets_images().glob("*.jpg"))
    add_photos(settings, photos[:8])
    run_pipeline(settings, instance)  # into the Milvus Lite file, as `adrag ingest` does
    served = settings.model_copy(update={"milvus_uri": server})
    ticker = Ticker(served, instance)
    encoder_id = EncoderSpec.parse(settings.encoder).encoder_id

    # The fresh server lacks all of it: the sensor asks for a run, with a reason.
    request = ticker.tick()
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["adrag/source"] == "index_follows_delta"
    # Asked again at once, nothing new is requested: the backoff holds it.
    held = ticker.tick()
    assert isinstance(held, dg.SkipReason) and "asking again in" in held.skip_message

    run_requested(instance, monkeypatch, server, request)
    index = index_for(served)
    try:
        assert index.count() == 8
        assert index.live_collection() == collection_name(encoder_id)
    finally:
        index.close()
    done = ticker.tick()
    assert isinstance(done, dg.SkipReason) and "holds what image_embeddings holds" in (
        done.skip_message
    )

    # Rows added through the file (another shell's ingest): seen, asked, filled.
    add_photos(settings, photos[8:11])
    run_pipeline(settings, instance)
    lag = index_lag(tables_for(served), MilvusIndex(server), encoder_id)
    assert lag is not None and "holds 8 rows for the 11" in lag, lag
    again = ticker.tick()
    assert isinstance(again, dg.RunRequest), again
    assert again.run_key != request.run_key
    run_requested(instance, monkeypatch, server, again)
    assert isinstance(ticker.tick(), dg.SkipReason)

    # A Milvus restarted empty (here: the collection dropped): rebuilt again.
    index = MilvusIndex(server)
    try:
        index.client.drop_collection(collection_name(encoder_id))
    finally:
        index.close()
    rebuild = ticker.tick()
    assert isinstance(rebuild, dg.RunRequest), rebuild
    run_requested(instance, monkeypatch, server, rebuild)
    index = MilvusIndex(server)
    try:
        assert index.count(collection_name(encoder_id)) == 11
    finally:
        index.close()


def test_waits_for_a_run_in_flight_and_backs_off_a_lag_left_in_place(settings, instance, server):
    add_photos(settings, sorted(pets_images().glob("*.jpg"))[:4])
    run_pipeline(settings, instance)
    served = settings.model_copy(update={"milvus_uri": server})
    ticker = Ticker(served, instance)

    # An ingest run in flight will sync the index itself: no second writer is asked for.
    run = DagsterRun(
        job_name="ingest_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
    )
    instance.add_run(run)
    skipped = ticker.tick()
    assert isinstance(skipped, dg.SkipReason)
    assert run.run_id in skipped.skip_message and "has no collection" in skipped.skip_message
    instance.report_run_failed(run)

    # A run that failed and left the lag: asked again after the backoff, with a new key.
    first = ticker.tick()
    assert isinstance(first, dg.RunRequest)
    cursor = json.loads(ticker.cursor)
    assert cursor["attempts"] == 1
    s = load_settings()
    cursor["asked_at"] -= doubling_backoff(1, s.sensor_interval, s.retry_max_seconds) + 1
    ticker.cursor = json.dumps(cursor)
    second = ticker.tick()
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key
    assert json.loads(ticker.cursor)["attempts"] == 2
    backoff = [doubling_backoff(n, s.sensor_interval, s.retry_max_seconds) for n in (0, 1, 2, 30)]
    assert backoff == [0, s.sensor_interval, 2 * s.sensor_interval, s.retry_max_seconds]


def test_a_milvus_lite_file_is_left_to_the_runs_and_a_dead_server_is_said(
    settings, instance, server
):
    # The file URI (the default): looking would take the file from the runs that write it.
    skipped = Ticker(settings, instance).tick()
    assert isinstance(skipped, dg.SkipReason) and "Milvus Lite file" in skipped.skip_message
    # A server that does not answer: said, and looked at again next tick.
    nobody = settings.model_copy(update={"milvus_uri": "http://127.0.0.1:9"})
    add_photos(settings, sorted(pets_images().glob("*.jpg"))[:1])
    run_pipeline(settings, instance)
    gone = Ticker(nobody, instance).tick()
    assert isinstance(gone, dg.SkipReason) and "cannot look at the index" in gone.skip_message


def test_adrag_ups_catch_up_fills_the_server_once_and_records_the_run(
    settings, instance, server, capsys
):
    from adrag_app.cli.index_catchup import catch_up

    add_photos(settings, sorted(pets_images().glob("*.jpg"))[:5])
    run_pipeline(settings, instance)
    served = settings.model_copy(update={"milvus_uri": server})
    assert catch_up(served)
    assert "has no collection" in capsys.readouterr().out
    index = index_for(served)
    try:
        assert index.count() == 5
    finally:
        index.close()
    # Nothing lags now: a second look starts no run.
    assert catch_up(served)
    assert "holds what the tables hold" in capsys.readouterr().out
    with dagster_instance(settings.dagster_home) as recorded:
        runs = recorded.get_runs(dg.RunsFilter(tags={"adrag/source": "up"}))
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
