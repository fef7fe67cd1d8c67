"""A volume in a local (or mounted) folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from adrag_assets.volume import FileStat
from adrag_assets.volume.paths import resolve_in_volume


class LocalVolume:
    """Files under one folder. Every path is checked to stay inside it (symlinks included)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalVolume({str(self.root)!r})"

    @property
    def uri(self) -> str:
        return str(self.root)

    def local_path(self, path: str) -> Path:
        return resolve_in_volume(self.root, path)

    def walk(self, prefix: str) -> Iterator[FileStat]:
        top = self.root / prefix
        for dirpath, dirnames, filenames in os.walk(top):
            # Hidden files and folders are upload tools' temp files, and our own atomic writes.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                try:
                    st = full.stat()
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield FileStat(full.relative_to(self.root).as_posix(), st.st_size, st.st_mtime_ns)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = (self.root / path).stat()
        except FileNotFoundError:
            return None
        return FileStat(path, st.st_size, st.st_mtime_ns)

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def write_all_or_nothing(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Each file goes to a hidden temp file in its folder, is synced, then renamed over
        its target (``os.replace`` is atomic within a filesystem). If anything fails, every
        temp file, every target already renamed and every folder created here is removed."""
        targets = [(resolve_in_volume(self.root, rel), data) for rel, data in files]
        created: list[Path] = []
        temps: list[Path] = []
        done: list[Path] = []
        try:
            for target, _ in targets:
                for parent in reversed([target.parent, *target.parent.parents]):
                    if not parent.exists():
                        parent.mkdir()
                        created.append(parent)
            for target, data in targets:
                fd, tmp = tempfile.mkstemp(
                    dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
                )
                temps.append(Path(tmp))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            for (target, _), tmp in zip(targets, temps, strict=True):
                os.replace(tmp, target)
                done.append(target)
        except BaseException:
            for path in [*temps, *done]:
                path.unlink(missing_ok=True)
            for folder in reversed(created):
                # Not empty: someone else wrote there meanwhile, not ours to remove.
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def delete(self, paths: Iterable[str]) -> None:
        files = [resolve_in_volume(self.root, p) for p in paths]
        for f in files:
            f.unlink(missing_ok=True)
        for folder in {f.parent for f in files}:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: the day's other ads stay
