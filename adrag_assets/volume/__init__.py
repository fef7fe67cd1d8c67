"""The storage volume: one interface over where the files live, and its layout, named once.

Layout::

    raw/**            photos people upload (any depth) with their sidecars and labels.csv
    brand/**          brand product images; brand/uploads/ holds those uploaded in the app
    ads/YYYY-MM-DD/   generated ads, a PNG and a .json sidecar each
    campaigns/        segments.txt: one audience segment per line (campaign_ads)

Every caller goes through :class:`Volume` with paths relative to the volume (POSIX
separators): :class:`~adrag_assets.volume.local.LocalVolume` for a folder,
:class:`~adrag_assets.volume.objstore.ObjectStoreVolume` for a bucket.

What is read, and what is not. A listing (:meth:`Volume.walk`) names every entry under a
prefix, but only regular files are ever read: an entry that is not one carries a ``problem``
(the reason it is not read), so the pipeline can reject it by name instead of hanging on a
FIFO or reading ``/dev/zero`` until memory runs out. Symlinks are followed only while they
stay inside the volume: people arrange photo libraries with links ("best of" folders linking
into year folders), and resolving them keeps that working, while a link whose target leaves
the volume (or is missing, or loops) is reported with that reason and never read. Reads check
again when the file is opened, so a link swapped after the listing cannot escape either. A
file name that is not valid UTF-8 cannot be stored in the tables or the index: it is listed
with its undecodable bytes shown as ``\\xNN`` escapes and the problem saying so.
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
    # Why this entry is not read as a file ("not a regular file (FIFO)", "symlink points
    # outside the volume", ...); None for a regular file that can be read.
    problem: str | None = None


class FileTooLarge(ValueError):
    """A file over the size a caller is willing to read into memory."""

    def __init__(self, path: str, size: int, limit: int):
        super().__init__(f"{path}: {size:,} bytes, over the {limit:,}-byte limit")
        self.path, self.size, self.limit = path, size, limit


class NotARegularFile(OSError):
    """An entry that is not a regular file (a FIFO, socket, device or folder), not read."""


class VolumeUnavailable(OSError):
    """The volume itself cannot be used (a bucket that is missing, credentials refused): one
    line naming the volume and what to check, never a secret."""


class Volume(Protocol):
    """What the pipeline, the service and the app need from a storage volume."""

    @property
    def uri(self) -> str:
        """Where the volume is, as shown to people (a folder, later a bucket URL)."""
        ...

    def relative(self, path: str | Path) -> str:
        """``path`` (relative to the volume, or absolute/a full URL inside it) as a POSIX
        path relative to the volume; ValueError when it leads outside."""
        ...

    def display(self, path: str) -> str:
        """Where ``path`` is, for people: a file name or a URL."""
        ...

    def check(self) -> None:
        """Raise :class:`VolumeUnavailable` (one line) when the volume cannot be listed."""
        ...

    def walk(self, prefix: str) -> Iterator[FileStat]:
        """Every entry under ``prefix`` (any depth) that is not a folder, hidden files and
        folders skipped; those that cannot be read as files carry a ``problem``."""
        ...

    def stat(self, path: str) -> FileStat | None:
        """The file's size and mtime, or None when it does not exist."""
        ...

    def read_bytes(self, path: str, max_bytes: int | None = None) -> bytes:
        """The file's bytes; FileNotFoundError when it is gone, :class:`NotARegularFile` for
        anything but a regular file, :class:`FileTooLarge` past ``max_bytes``, ValueError for
        a path that leads outside the volume."""
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
    """The volume at ``root``: a local folder, or ``s3://`` / ``gs://`` / ``az://`` URL."""
    if "://" in str(root):
        from adrag_assets.volume.objstore import ObjectStoreVolume

        return ObjectStoreVolume(str(root))
    from adrag_assets.volume.local import LocalVolume

    return LocalVolume(root)


def is_file(volume: Volume, path: str) -> bool:
    """Whether ``path`` (relative to the volume, checked) is a regular file in ``volume``.
    ValueError for a path that leads outside it."""
    rel = volume.relative(path)
    from adrag_assets.volume.local import LocalVolume

    if isinstance(volume, LocalVolume):  # a folder has folders and links; stat() follows them
        return volume.local_path(rel).is_file()
    return volume.stat(rel) is not None
