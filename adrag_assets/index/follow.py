"""Does a Milvus hold what Delta holds? The cheap look that lets any index follow the table.

The index is derived from ``image_embeddings``, and the same tables can be indexed into more
than one Milvus: the Milvus Lite file `adrag ingest` writes by default, the `milvus-lite
server` `adrag up` starts, a remote Milvus. A run records in the instance that it
materialized ``image_index``, not which Milvus it wrote, so Dagster's own conditions cannot
tell that the Milvus a stack serves lacks what another process indexed elsewhere. This look
can: it compares the served collection of an encoder with the table, in a few metadata calls
and counts (no id is read), and says what is behind. A sync (:func:`sync_index`) fixes it:
without a recorded Delta version it rebuilds from the table.
"""

from __future__ import annotations

from adrag_assets.index.milvus import PROP_SYNCED_VERSION, MilvusIndex, collection_name
from adrag_assets.tables import Tables
from adrag_assets.tables_maintenance import first_data_commit

TABLE = "image_embeddings"


def index_lag(tables: Tables, index: MilvusIndex, encoder_id: str) -> str | None:
    """Why ``index`` lacks what image_embeddings holds for ``encoder_id``, in one line, or
    None when it holds it (or there is nothing to hold).

    Behind means: the encoder's collection is missing, never finished a sync, holds another
    number of rows than the table, or was synced to a Delta version older than a commit that
    changed rows; or no alias names any collection. An alias on another encoder's collection
    is not a lag: that is an encoder switch, which the quality gate decides.
    Raises :class:`MilvusError` when Milvus cannot be asked.
    """
    if not tables.exists(TABLE):
        return None
    rows = tables.count_equal(TABLE, "encoder_id", encoder_id)
    name = collection_name(encoder_id)
    where = f"{index.shown_uri}"
    if not index.client.has_collection(name):
        if rows == 0:
            return None
        return f"{where} has no collection {name} for the {rows} rows of {TABLE}"
    synced = index.properties(name).get(PROP_SYNCED_VERSION)
    if synced in (None, ""):
        return f"collection {name} at {where} never finished a sync ({rows} rows in {TABLE})"
    held = index.count(name)
    if held != rows:
        return f"collection {name} at {where} holds {held} rows for the {rows} of {TABLE}"
    version = tables.version(TABLE)
    if int(synced) < version:
        changed = first_data_commit(tables, TABLE, int(synced) + 1)
        if changed is not None:
            return (
                f"collection {name} at {where} is synced to Delta v{synced}; {TABLE} changed "
                f"rows at v{changed[0]} (now v{version})"
            )
    if rows and index.live_collection() is None:
        return f"no alias {index.alias} at {where} names a collection ({rows} rows in {TABLE})"
    return None
