"""Paths inside the volume: everything that serves or writes a file checks it here first."""

from __future__ import annotations

from pathlib import Path


def resolve_in_volume(volume: str | Path, rel_or_abs: str | Path) -> Path:
    """The real path of ``rel_or_abs`` (relative to the volume, or absolute) if it lies inside
    the volume; ``ValueError`` otherwise.

    Refuses ``..`` components outright (a canonical path never needs them), and anything that
    resolves outside the volume, including through a symlink at any level.
    """
    root = Path(volume).resolve()
    raw = str(rel_or_abs)
    if not raw.strip() or "\x00" in raw:
        raise ValueError(f"{raw!r} is not a usable path")
    candidate = Path(raw)
    if ".." in candidate.parts:
        raise ValueError(f"path {raw!r} contains '..'; give a path inside the volume {root}")
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"path {raw!r} resolves outside the volume {root}")
    return resolved


def relative_to_volume(volume: str | Path, path: str | Path) -> str:
    """``path`` (checked by :func:`resolve_in_volume`) as a POSIX path relative to the volume."""
    return resolve_in_volume(volume, path).relative_to(Path(volume).resolve()).as_posix()
