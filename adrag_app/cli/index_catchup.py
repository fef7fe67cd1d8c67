"""`adrag up`'s first look at the index it serves, filled from the tables if it lacks anything.

`adrag up` runs this once (``python -m adrag_app.cli.index_catchup``, in its own process,
with the stack's environment) as soon as Milvus answers, while Dagster is still starting:
a fresh `milvus-lite server` is empty even when `adrag ingest` indexed every photo into the
Milvus Lite file, and Dagster's webserver and daemon take half a minute or more to come up
on a small machine before the ``index_follows_delta`` sensor can look. The look is the
sensor's (:func:`adrag_assets.index.follow.index_lag`); when the index lags, it materializes
``image_index`` in this process as `adrag ingest` does: recorded in the Dagster instance
(tag ``adrag/source=up``), in the writers' pool, with the asset's checks and quality gate.
The sensor sees that run in flight and waits; it stays the one that keeps the index
following the tables while the stack runs.
"""

from __future__ import annotations

import sys

import click

from adrag_assets.embeddings.spec import EncoderError, EncoderSpec
from adrag_assets.index.follow import index_lag
from adrag_assets.index.milvus import MilvusError, MilvusIndex, display_uri
from adrag_assets.settings import Settings, load_settings
from adrag_assets.tables import Tables

ATTEMPTS = 2  # a run lost to a Milvus hiccup (a dropped connection) is tried once more


def catch_up(settings: Settings) -> bool:
    """Fill the configured Milvus from the tables when it lags; False when that failed."""
    try:
        encoder_id = EncoderSpec.parse(settings.encoder).encoder_id
    except EncoderError as e:
        click.echo(f"index: no encoder to follow: {e}")
        return False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            lag = look(settings, encoder_id)
        except MilvusError as e:
            click.echo(f"index: cannot look at it ({e}); the index_follows_delta sensor will")
            return False
        if lag is None:
            where = display_uri(settings.milvus_uri)
            click.echo(f"index: {where} holds what the tables hold for {encoder_id}")
            return True
        if attempt > 1:
            click.echo(f"index: still behind after a failed run; attempt {attempt}")
        click.echo(f"index: {lag}; filling it from the tables")
        if fill(settings):
            return True
    return False


def look(settings: Settings, encoder_id: str) -> str | None:
    index = MilvusIndex(settings.milvus_uri, settings.milvus_token, settings.index_alias)
    try:
        return index_lag(Tables(settings.tables_uri), index, encoder_id)
    finally:
        index.close()


def fill(settings: Settings) -> bool:
    """Materialize ``image_index`` as `adrag ingest` does, recorded in the instance."""
    import dagster as dg

    from adrag_assets.defs.index import image_index
    from adrag_assets.defs.resources import resources_from_settings
    from adrag_assets.instance import dagster_instance

    instance = dagster_instance(settings.dagster_home, postgres=bool(settings.dagster_pg_url))
    result = dg.materialize(
        [image_index],
        resources=resources_from_settings(settings),
        instance=instance,
        # INFO: the sync's own lines (what was rebuilt, the gate) without each event's DEBUG.
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
        tags={"adrag/source": "up"},
    )
    click.echo(f"index: run {result.run_id} {'succeeded' if result.success else 'failed'}")
    return result.success


if __name__ == "__main__":
    sys.exit(0 if catch_up(load_settings()) else 1)
