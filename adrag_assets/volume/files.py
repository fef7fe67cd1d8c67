"""What is under ``raw/``: which files are photos, which are sidecars, and the labels.

Layout of a volume::

    raw/**/<photo>          photos people upload, any depth
    raw/**/labels.csv       labels for the photos in its folder and below: a ``file`` column
                            (path relative to the csv's folder, or a bare file name) and any
                            other columns (the pet sample has ``file,breed,species``)
    raw/**/<photo>.json     labels for one photo, a flat JSON object
    raw/**/<photo>.txt      a caption for one photo (stored as the label ``caption``)

``<photo>`` in a sidecar name is the photo's file name with or without its extension
(``rex.jpg.txt`` or ``rex.txt`` for ``rex.jpg``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import PurePosixPath

from adrag_assets.volume import RAW, FileStat, Volume

LABELS_CSV = "labels.csv"
SIDECAR_SUFFIXES = (".json", ".txt")


def sidecar_map(paths: set[str]) -> dict[str, str]:
    """Map each .json/.txt sidecar among ``paths`` to the photo it describes."""
    by_stem: dict[tuple[str, str], str] = {}
    for q in sorted(paths, reverse=True):  # the first path by name wins a shared stem
        pq = PurePosixPath(q)
        if pq.suffix.lower() not in SIDECAR_SUFFIXES:
            by_stem[(str(pq.parent), pq.stem)] = q
    found = {}
    for q in paths:
        pq = PurePosixPath(q)
        if pq.suffix.lower() not in SIDECAR_SUFFIXES:
            continue
        full = str(pq.with_suffix(""))  # rex.jpg.txt -> rex.jpg
        photo = full if full in paths else by_stem.get((str(pq.parent), pq.stem))
        if photo is not None and photo != q:
            found[q] = photo
    return found


def scan(volume: Volume) -> tuple[list[FileStat], list[str]]:
    """Stat every file under ``raw/``: (candidate photos, sidecar paths), sorted by path.

    Only a stat per file: content is read later and only for new or changed files.
    """
    stats = {st.path: st for st in volume.walk(RAW)}
    names = set(stats)
    sidecars = sorted(set(sidecar_map(names)) | {p for p in names if p.endswith("/" + LABELS_CSV)})
    photos = [stats[p] for p in sorted(names) if p not in set(sidecars)]
    return photos, sidecars


def read_labels(volume: Volume, photo_paths: list[str], sidecars: list[str]) -> dict[str, dict]:
    """Labels for each photo path from labels.csv files and per-photo sidecars.

    A sidecar next to the photo wins over a csv; a deeper csv wins over a shallower one.
    """
    labels: dict[str, dict] = {p: {} for p in photo_paths}
    by_name: dict[tuple[str, str], list[str]] = {}  # (csv folder prefix, file name) -> photos
    for p in photo_paths:
        pp = PurePosixPath(p)
        for parent in pp.parents:
            by_name.setdefault((str(parent), pp.name), []).append(p)
    # Shallow csvs first, so deeper ones overwrite them.
    for csv_path in sorted(
        (s for s in sidecars if s.endswith(LABELS_CSV)), key=lambda s: s.count("/")
    ):
        folder = str(PurePosixPath(csv_path).parent)
        try:
            text = volume.read_bytes(csv_path).decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable csv is reported by the coverage check, not fatal
        for row in csv.DictReader(io.StringIO(text)):
            name = (row.pop("file", None) or "").strip()
            if not name:
                continue
            values = {k.strip(): (v or "").strip() for k, v in row.items() if k and v}
            exact = f"{folder}/{name}"
            targets = [exact] if exact in labels else by_name.get((folder, name), [])
            for t in targets:
                labels[t].update(values)
    for side, photo in sorted(sidecar_map(set(labels) | set(sidecars)).items()):
        if photo not in labels:
            continue
        try:
            text = volume.read_bytes(side).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if side.endswith(".txt"):
            labels[photo]["caption"] = text.strip()
        else:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                labels[photo].update({str(k): str(v) for k, v in obj.items()})
    return labels


def iter_files(volume: Volume, paths: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """Read files one by one; a file that vanished yields ``None`` instead of failing."""
    for p in paths:
        try:
            yield p, volume.read_bytes(p)
        except FileNotFoundError:
            yield p, None
