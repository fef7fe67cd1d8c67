"""The duplicate review for people: near-duplicate groups of the live index, and keep /
archive / restore, as the app's Duplicates tab and `adrag duplicates` / `adrag archive` use
them. The decisions are :mod:`adrag_assets.images.reviews`'."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adrag_assets.images.reviews import (
    ARCHIVE,
    KEEP,
    RESTORE,
    Review,
    latest,
    record,
    resolve_photo,
)
from adrag_assets.index.diversity import collection_threshold
from adrag_assets.index.duplicates import find_near_duplicates
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.search import IndexNotReady
from adrag_assets.settings import Settings
from adrag_assets.tables import Tables


@dataclass(frozen=True)
class GroupPhoto:
    image_id: str
    path: str
    decision: str = ""  # the last review action ("archive", "restore", "keep") or ""
    by: str = ""
    at: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.decision == ARCHIVE


@dataclass(frozen=True)
class DuplicateGroups:
    threshold: float
    photos: int  # photos in the live index
    groups: list[list[GroupPhoto]]


def tables_of(settings: Settings) -> Tables:
    return Tables(settings.tables_uri)


def duplicate_groups(settings: Settings, index: MilvusIndex) -> DuplicateGroups:
    """The near-duplicate groups of the live collection (cosine at or above its threshold),
    largest first, each photo with its last review decision. Archived photos stay in their
    group, marked, so an archive can be undone from where it was made."""
    name = index.live_collection()
    if name is None:
        raise IndexNotReady("no photos are indexed yet: run `adrag ingest` first")
    threshold = collection_threshold(index, name, settings)
    found = find_near_duplicates(index, name, threshold)
    decisions = latest(tables_of(settings))
    groups = []
    for group in found.groups():
        photos = []
        for image_id in group:
            r: Review | None = decisions.get(image_id)
            photos.append(
                GroupPhoto(
                    image_id,
                    found.paths.get(image_id, ""),
                    r.action if r else "",
                    r.user if r else "",
                    r.at if r else None,
                )
            )
        groups.append(photos)
    return DuplicateGroups(threshold, found.photos, groups)


def archive(settings: Settings, refs: list[str], user: str, undo: bool = False) -> list[Review]:
    """Archive (or, with ``undo``, restore) the photos named by id or volume path, as
    ``user``; :class:`UnknownPhoto` before anything is recorded when one is not a photo."""
    tables = tables_of(settings)
    ids = [resolve_photo(tables, ref)[0] for ref in refs]
    return record(tables, ids, RESTORE if undo else ARCHIVE, user)


def keep(settings: Settings, image_ids: list[str], user: str) -> list[Review]:
    """Record that these photos were reviewed and stay (a group marked as looked at)."""
    tables = tables_of(settings)
    return record(tables, [resolve_photo(tables, i)[0] for i in image_ids], KEEP, user)
