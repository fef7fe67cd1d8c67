"""The storage volume: one interface over where the files live, and its layout, named once.

Layout::

    raw/**            photos people upload (any depth) with their sidecars and labels.csv
    brand/**          brand product images; brand/uploads/ holds those uploaded in the app
    ads/YYYY-MM-DD/   generated ads, a PNG and a .json sidecar each
    campaigns/        segments.txt: one audience segment per line (campaign_ads)

Every caller goes through :class:`Volume` with paths relative to the volume (POSIX
separators), so another store (an object store) can be added beside :class:`LocalVolume`
without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

RAW = "raw"
BRAND = "brand"
BRAND_UPLOADS = "brand/uploads"
ADS = "ads"
CAMPAIGNS = "campaigns"
SEGMENTS_FILE = "campaigns/segments.txt"


@dataclass(frozen=True)
class FileStat:
    path: str  # relative to the volume, POSIX separators: "raw/dogs/rex.jpg"
    size: int
    mtime_ns: int


class Volume(Protocol):
    """What the pipeline, the service and the app need from a storage volume."""

    @property
    def uri(self) -> str:
        """Where the volume is, as shown to people (a folder, later a bucket URL)."""
        ...

    def walk(self, prefix: str) -> Iterator[FileStat]:
        """Every file under ``prefix`` (any depth), hidden files and folders skipped."""
        ...

    def stat(self, path: str) -> FileStat | None:
        """The file's size and mtime, or None when it does not exist."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """The file's bytes; FileNotFoundError when it is gone."""
        ...

    def write_all_or_nothing(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Write each (path, bytes), in order, each atomically, and all of them or none."""
        ...

    def delete(self, paths: Iterable[str]) -> None:
        """Remove the files (missing ones are fine), and folders this leaves empty."""
        ...

    def local_path(self, path: str) -> Path:
        """A local file with the content of ``path`` (for tools that want a file name)."""
        ...


def open_volume(root: str | Path) -> Volume:
    """The volume at ``root`` (a local folder today)."""
    from adrag_assets.volume.local import LocalVolume

    return LocalVolume(root)
