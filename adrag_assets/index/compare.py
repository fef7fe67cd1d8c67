"""Does a collection hold exactly the table's ids for its encoder? Counted and digested.

Each id hashes to 64 bits; the digest of a set of ids is the sum of their hashes modulo
2**64, which does not depend on order, so it is computed while streaming the ids from Delta
and from a Milvus query iterator, holding neither set. Equal counts and digests: the sets
are equal (short of a 64-bit collision). The ids also fall into 256 buckets by hash, each
with its own count and digest; when the totals differ, only the ids of the buckets that
differ are gathered (from the table, then matched against the index's stream) to name the
missing ids and the ghosts. One deleted row plus one stray row keeps the count, but never
the digest.

That full comparison streams every id, so it belongs to the audit job and to runs that
rebuild. A run that applied changes checks :func:`quick_check` instead: row counts (from
Delta's log and Milvus) and membership of the ids it wrote or deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.tables import Tables

BUCKETS = 256
_MASK = 2**64 - 1


def _hash(image_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(image_id.encode(), digest_size=8).digest(), "big")


@dataclass
class Tally:
    """Per-bucket row counts and digests of a stream of ids."""

    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    sums: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, ids: Iterable[str]) -> None:
        for i in ids:
            h = _hash(i)
            b = h % BUCKETS
            self.counts[b] += 1
            self.sums[b] = (self.sums[b] + h) & _MASK

    @property
    def rows(self) -> int:
        return sum(self.counts)

    @property
    def digest(self) -> str:
        return f"{sum(self.sums) & _MASK:016x}"

    def differing(self, other: Tally) -> set[int]:
        return {
            b
            for b in range(BUCKETS)
            if (self.counts[b], self.sums[b]) != (other.counts[b], other.sums[b])
        }


@dataclass
class IdComparison:
    table_rows: int
    index_rows: int
    table_digest: str
    index_digest: str
    missing: list[str] = field(default_factory=list)  # in the table, not in the index
    ghosts: list[str] = field(default_factory=list)  # in the index, not in the table
    scope: str = "every id"  # or "this run's ids" (quick_check: counts and those ids only)

    @property
    def matches(self) -> bool:
        return not self.missing and not self.ghosts and self.table_rows == self.index_rows


def table_ids(tables: Tables, encoder_id: str) -> Iterator[list[str]]:
    """The image ids of ``encoder_id``'s rows in image_embeddings, in batches."""
    if not tables.exists("image_embeddings"):
        return
    quoted = encoder_id.replace("'", "''")
    sql = f"SELECT image_id FROM image_embeddings WHERE encoder_id = '{quoted}'"
    for batch in tables.query("image_embeddings", sql):
        yield batch.column("image_id").to_pylist()


def compare_ids(
    tables: Tables, index: MilvusIndex, collection: str, encoder_id: str
) -> IdComparison:
    """Compare the collection's ids with the table's (see the module): two streams each way
    at most, and memory for the ids of the differing buckets only."""
    in_table, in_index = Tally(), Tally()
    for batch in table_ids(tables, encoder_id):
        in_table.add(batch)
    for batch in index.iter_ids(collection):
        in_index.add(batch)
    result = IdComparison(in_table.rows, in_index.rows, in_table.digest, in_index.digest)
    differing = in_table.differing(in_index)
    if not differing:
        return result
    pending: set[str] = set()
    for batch in table_ids(tables, encoder_id):
        pending.update(i for i in batch if _hash(i) % BUCKETS in differing)
    for batch in index.iter_ids(collection):
        for i in batch:
            if _hash(i) % BUCKETS not in differing:
                continue
            if i in pending:
                pending.discard(i)
            else:
                result.ghosts.append(i)
    result.missing = sorted(pending)
    result.ghosts.sort()
    return result


def quick_check(
    tables: Tables,
    index: MilvusIndex,
    collection: str,
    encoder_id: str,
    upserted: list[str],
    deleted: list[str],
    chunk: int = 1000,
) -> IdComparison:
    """Row counts of both sides, and whether the ids a run upserted are in the collection and
    those it deleted are not: work in proportion to the run, not to the table."""
    result = IdComparison(
        tables.count_equal("image_embeddings", "encoder_id", encoder_id),
        index.count(collection),
        "",
        "",
        scope="this run's ids",
    )
    asked = [*upserted, *deleted]
    present: set[str] = set()
    for i in range(0, len(asked), chunk):
        rows = index.client.get(collection, ids=asked[i : i + chunk], output_fields=["image_id"])
        present.update(r["image_id"] for r in rows)
    result.missing = sorted(set(upserted) - present)
    result.ghosts = sorted(set(deleted) & present)
    return result
