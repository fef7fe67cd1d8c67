"""Near-duplicate photos in a collection: pairs above a cosine threshold, and their groups.

Pairs come from Milvus range searches (``radius`` = the threshold) over the collection's own
vectors, a batch of query vectors at a time: memory and work grow with the photos and their
neighbours, never with photos squared (no N x N matrix). Groups are the connected components
of the pairs (union-find): a shot exported three times is one group of three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from adrag_assets.index.milvus import MilvusIndex

# Neighbours one photo may have above the threshold; a photo with more is in a group that
# large anyway (its neighbours' own searches add the rest of the group).
NEIGHBOURS = 64
BATCH = 256


@dataclass(frozen=True)
class Pair:
    a: str  # image ids, a < b
    b: str
    score: float


@dataclass
class NearDuplicates:
    threshold: float
    photos: int = 0
    pairs: list[Pair] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)  # image_id -> path, for photos in pairs

    def groups(self) -> list[list[str]]:
        """Connected components of the pairs, each sorted by path, largest groups first."""
        parent: dict[str, str] = {}

        def root(x: str) -> str:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for p in self.pairs:
            ra, rb = root(p.a), root(p.b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        members: dict[str, list[str]] = {}
        for x in parent:
            members.setdefault(root(x), []).append(x)
        groups = [sorted(m, key=lambda i: (self.paths.get(i, ""), i)) for m in members.values()]
        return sorted(groups, key=lambda g: (-len(g), self.paths.get(g[0], ""), g[0]))


def find_near_duplicates(
    index: MilvusIndex,
    name: str,
    threshold: float,
    *,
    batch: int = BATCH,
    log: logging.Logger | Callable | None = None,
) -> NearDuplicates:
    """Every pair of photos in collection ``name`` whose cosine is at least ``threshold``."""
    found = NearDuplicates(threshold)
    scores: dict[tuple[str, str], float] = {}
    paths: dict[str, str] = {}
    # Range search keeps scores strictly above the radius: a hair below makes it "at least".
    radius = threshold - 1e-6
    for rows in index.iter_vectors(name, batch_size=batch):
        found.photos += len(rows)
        for row in rows:
            paths[row["image_id"]] = row["path"]
        neighbours = index.search_within(name, [r["vector"] for r in rows], radius, NEIGHBOURS)
        for row, near in zip(rows, neighbours, strict=True):
            for other, score in near:
                if other != row["image_id"]:
                    key = (min(row["image_id"], other), max(row["image_id"], other))
                    scores[key] = max(scores.get(key, 0.0), min(score, 1.0))
        if log is not None:
            info = log.info if hasattr(log, "info") else log
            info(f"near duplicates: {found.photos} photos searched, {len(scores)} pairs so far")
    found.pairs = [Pair(a, b, s) for (a, b), s in sorted(scores.items())]
    wanted = {i for p in found.pairs for i in (p.a, p.b)}
    found.paths = {i: paths.get(i, "") for i in wanted}
    return found
