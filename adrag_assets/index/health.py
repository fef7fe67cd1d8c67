"""Can Milvus read its own data, and making it so when it cannot.

The index is derived from ``image_embeddings``, so damaged Milvus data is never fatal: it is
put out of the way and the sync rebuilds from the table. What "out of the way" means
depends on who owns the data:

* a Milvus Lite file (a folder, in this process): moved aside whole, with a timestamp
  suffix (``adrag.db.broken-20261128T120000Z``), never deleted; a fresh one is started;
* a server (``milvus-lite server`` or any Milvus): its data folder is not ours, so an
  unreadable collection is dropped through the API (a ``milvus-lite server`` cannot list
  its collections while one of them is unreadable, so the alias's target and the
  collection the sync is about to use are probed by name). What is still unreadable after
  that (its alias list, say) cannot be repaired from here: that is a clear error.

Probing runs before every sync; it costs a few metadata calls and a count per collection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from adrag_assets.index.milvus import IndexUnreadable, MilvusError, MilvusIndex, MilvusUnavailable


@dataclass
class Health:
    store_error: str = ""  # the collections or aliases cannot be listed
    broken: dict[str, str] = field(default_factory=dict)  # collection -> why it is unreadable

    @property
    def ok(self) -> bool:
        return not self.store_error and not self.broken


@contextmanager
def _quiet_pymilvus() -> Iterator[None]:
    # pymilvus logs every failed call at ERROR with a traceback; while probing, a failure is
    # an expected answer, reported once and clearly by the caller.
    logger = logging.getLogger("pymilvus.decorators")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check(index: MilvusIndex, expected: Iterable[str] = ()) -> Health:
    """Whether Milvus can list its aliases and collections and read each adrag collection
    (those listed, the alias's target and ``expected``, which a damaged collection may keep
    from being listed at all).

    A Milvus that does not answer raises MilvusUnavailable: that is not damaged data.
    """
    health = Health()
    with _quiet_pymilvus():
        names = set(expected)
        try:
            live = index.live_collection()
        except MilvusUnavailable:
            raise
        except MilvusError as e:
            health.store_error = str(e)
            return health
        if live:
            names.add(live)
        try:
            names.update(index.collections())
        except MilvusUnavailable:
            raise
        except MilvusError as e:
            health.store_error = str(e)
        for name in sorted(names):
            try:
                index.probe(name)
            except MilvusUnavailable:
                raise
            except MilvusError as e:
                health.broken[name] = str(e)
    return health


def make_readable(
    index: MilvusIndex, log: logging.Logger, expected: Iterable[str] = ()
) -> list[str]:
    """Put unreadable Milvus data out of the way (see the module); what was done, if anything.

    Afterwards every adrag collection that is left is readable, and the sync rebuilds the
    ones that are missing from ``image_embeddings``. ``expected``: the collections the
    caller will use.
    """
    expected = list(expected)
    health = check(index, expected)
    if health.ok:
        return []
    reason = "; ".join(health.broken.values()) or health.store_error
    if index.is_lite_file:
        moved = index.set_aside()
        done = f"moved the unreadable Milvus Lite data aside to {moved}"
        log.warning(
            "index: %s cannot be read (%s); %s and rebuilding the index from image_embeddings",
            index.shown_uri,
            reason,
            done,
        )
        return [done]
    done = []
    for name, why in health.broken.items():
        try:
            index.client.drop_collection(name)
        except MilvusError as e:
            raise IndexUnreadable(
                f"collection {name} at {index.shown_uri} cannot be read ({why}) nor dropped "
                f"({e}); drop it by hand and sync again"
            ) from e
        index.forget(name)
        log.warning(
            "index: collection %s at %s cannot be read (%s); dropped it, rebuilding it from "
            "image_embeddings",
            name,
            index.shown_uri,
            why,
        )
        done.append(f"dropped the unreadable collection {name}")
    still = check(index, expected)
    if not still.ok:
        raise IndexUnreadable(
            f"{still.store_error or '; '.join(still.broken.values())}. The server cannot read "
            f"its own data and this cannot be repaired through its API: stop it, move its data "
            f"folder aside (`adrag up` keeps it in $ADRAG_HOME/milvus-server), start it again, "
            f"and the next sync rebuilds the index from image_embeddings"
        )
    return done
