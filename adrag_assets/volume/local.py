"""A volume in a local (or mounted) folder."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from adrag_assets.volume import FileStat, FileTooLarge, NotARegularFile
from adrag_assets.volume.paths import relative_to_volume, resolve_in_volume

NOT_UTF8 = "file name is not valid UTF-8 (shown with \\x escapes); rename the file"


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

    def check(self) -> None:
        # A folder that does not exist yet is an empty volume (it is created on first write).
        return None

    def relative(self, path: str | Path) -> str:
        return relative_to_volume(self.root, path)

    def display(self, path: str) -> str:
        return str(self.root / path)

    def walk(self, prefix: str) -> Iterator[FileStat]:
        top = self.root / prefix
        for dirpath, dirnames, filenames in os.walk(top):
            # Hidden files and folders are upload tools' temp files, and our own atomic writes.
            visible = sorted(d for d in dirnames if not d.startswith("."))
            # os.walk lists a symlink to a folder among the folders without entering it; it is
            # reported like a file instead, so the photos behind it are not silently missing.
            links = [d for d in visible if os.path.islink(os.path.join(dirpath, d))]
            dirnames[:] = [d for d in visible if d not in links]
            for name in sorted([*filenames, *links]):
                if name.startswith("."):
                    continue
                entry = self._entry(Path(dirpath) / name)
                if entry is not None:
                    yield entry

    def entry(self, path: str) -> FileStat | None:
        """``path`` as :meth:`walk` would list it, or None when the walk would not (gone, or a
        plain folder): lets a caller look at a few named files without walking them all."""
        full = self.root / self.relative(path)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(full.lstat().st_mode):
                return None
        return self._entry(full)

    def _entry(self, full: Path) -> FileStat | None:
        """One listed entry, with the reason it is not read when it is not a plain file."""
        rel = full.relative_to(self.root).as_posix()
        try:
            st = full.lstat()
        except FileNotFoundError:  # deleted while we walked
            return None
        problem = None
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            # os.walk decodes undecodable bytes as surrogates, which no table can store.
            rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            problem = NOT_UTF8
        if problem is None and stat.S_ISLNK(st.st_mode):
            problem, st = self._follow(full, st)
        if problem is None and not stat.S_ISREG(st.st_mode):
            problem = f"not a regular file ({_kind(st.st_mode)})"
        return FileStat(rel, st.st_size, st.st_mtime_ns, problem)

    def _follow(self, link: Path, st: os.stat_result) -> tuple[str | None, os.stat_result]:
        """(problem, the target's stat) for a symlink; it may only lead inside the volume."""
        try:
            target = link.resolve(strict=True)
        except FileNotFoundError:
            return "broken symlink (its target does not exist)", st
        except RuntimeError:  # Python < 3.13 reports a loop this way
            return "symlink loop", st
        except OSError as e:
            return ("symlink loop" if e.errno == errno.ELOOP else f"symlink unusable ({e})"), st
        if not target.is_relative_to(self.root):
            return "symlink points outside the volume", st
        try:
            return None, target.stat()
        except OSError as e:
            return f"symlink unusable ({e.strerror or e})", st

    def stat(self, path: str) -> FileStat | None:
        try:
            st = (self.root / path).stat()
        except FileNotFoundError:
            return None
        return FileStat(path, st.st_size, st.st_mtime_ns)

    def read_bytes(self, path: str, max_bytes: int | None = None) -> bytes:
        real = resolve_in_volume(self.root, path)  # symlinks resolved and confined, again
        # O_NONBLOCK: a FIFO swapped in after the listing opens at once instead of hanging,
        # and is then refused below; O_NOFOLLOW: the resolved path must not turn into a link.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotARegularFile(f"{path}: not a regular file ({_kind(st.st_mode)})")
            if max_bytes is None:
                return f.read()
            if st.st_size > max_bytes:
                raise FileTooLarge(path, st.st_size, max_bytes)
            data = f.read(max_bytes + 1)  # it may have grown since the stat
            if len(data) > max_bytes:
                raise FileTooLarge(path, len(data), max_bytes)
            return data

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


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"
