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

A name in a labels.csv row or a sidecar's name matches its photo exactly, in another Unicode
form (NFC against NFD) or, when one photo fits, in another case; a row matching none is a
warning. Keys and values are redacted (:mod:`adrag_assets.redact`) before anything stores them.

Labels are a convenience, never a reason to stop: a sidecar or labels.csv that cannot be
read, is too large, not UTF-8, not valid JSON or has no ``file`` column gives a warning
naming the file and what was done about it, and the other files' labels still apply. Values
are cut to sizes the search index takes (a long caption is truncated, with a warning), so
one photo's labels can never make the index fail.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from adrag_assets.redact import REDACTED, redact_text
from adrag_assets.volume import RAW, FileStat, FileTooLarge, Volume

LABELS_CSV = "labels.csv"
SIDECAR_SUFFIXES = (".json", ".txt")

# The index stores a photo's path in a field of this many bytes; a longer path is rejected.
MAX_PATH_BYTES = 2048
# Sidecars are read whole into memory, so each kind has a cap. A labels.csv describes a
# whole library (about 50 bytes a photo), hence its larger one.
MAX_SIDECAR_BYTES = 1 << 20
MAX_LABELS_CSV_BYTES = 32 << 20
# One label value (a caption, a csv cell) and one key: longer ones are cut, with a warning.
MAX_LABEL_CHARS = 2000
MAX_KEY_CHARS = 100
# All of one photo's labels (keys and values, UTF-8): what the index's text field holds for
# BM25 (8,192), so nothing is cut there. Past it, the last labels (by key) are cut or dropped.
MAX_LABELS_BYTES = 8192

Warn = Callable[[str], None]
# A JSON escape can decode to half a UTF-16 pair, which no encoder (Delta, gRPC) accepts.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def sidecar_map(paths: set[str]) -> dict[str, str]:
    """Map each .json/.txt sidecar among ``paths`` to the photo it describes."""
    by_stem: dict[tuple[str, str], str] = {}
    # Case and Unicode form aside (Rex.jpg.txt for Rex.JPG; an NFD name), for a sidecar
    # that matches no photo exactly: used when exactly one photo fits.
    by_folded: dict[tuple[str, str], set[str]] = {}
    for q in sorted(paths, reverse=True):  # the first path by name wins a shared stem
        pq = PurePosixPath(q)
        if pq.suffix.lower() not in SIDECAR_SUFFIXES:
            by_stem[(str(pq.parent), pq.stem)] = q
            for name in (pq.name, pq.stem):
                by_folded.setdefault((str(pq.parent), folded(name)), set()).add(q)
    found = {}
    for q in paths:
        pq = PurePosixPath(q)
        if pq.suffix.lower() not in SIDECAR_SUFFIXES:
            continue
        full = str(pq.with_suffix(""))  # rex.jpg.txt -> rex.jpg
        photo = full if full in paths else by_stem.get((str(pq.parent), pq.stem))
        if photo is None:
            fits = by_folded.get((str(pq.parent), folded(pq.stem)), set())
            photo = next(iter(fits)) if len(fits) == 1 else None
        if photo is not None and photo != q:
            found[q] = photo
    return found


def scan(volume: Volume) -> tuple[list[FileStat], list[FileStat]]:
    """Stat every file under ``raw/``: (candidate photos, sidecars), sorted by path.

    Only a stat per file: content is read later and only for new or changed files. Entries
    that cannot be read (see :class:`FileStat`'s ``problem``) are listed too, so they are
    rejected or warned about by name rather than missing without a trace.
    """
    stats = {st.path: _path_checked(st) for st in volume.walk(RAW)}
    names = set(stats)
    side = set(sidecar_map(names)) | {p for p in names if p.endswith("/" + LABELS_CSV)}
    photos = [stats[p] for p in sorted(names) if p not in side]
    return photos, [stats[p] for p in sorted(side)]


def _path_checked(st: FileStat) -> FileStat:
    size = len(st.path.encode("utf-8"))
    if st.problem is None and size > MAX_PATH_BYTES:
        return replace(
            st,
            problem=f"path is {size:,} bytes long, over the {MAX_PATH_BYTES:,} the index "
            "stores; shorten its folder or file names",
        )
    return st


def stat_listed(volume: Volume, path: str) -> FileStat | None:
    """One file as :func:`scan` would list it (problem included), or None when the scan
    would not list it: the stat of a named few instead of a walk of everything."""
    rel = volume.relative(path)
    if not rel.startswith(RAW + "/") or any(p.startswith(".") for p in rel.split("/")):
        return None  # the scan covers raw/ and skips hidden files and folders
    from adrag_assets.volume.local import LocalVolume

    if isinstance(volume, LocalVolume):  # a folder has links and FIFOs, which walk reports
        st = volume.entry(rel)
    else:
        st = None if rel.endswith("/") else volume.stat(rel)
    return None if st is None else _path_checked(st)


def looks_like_sidecar(path: str) -> bool:
    """Whether ``path`` is or may be a sidecar or labels.csv (a .json/.txt file is one when a
    photo of its name is beside it): a change to one may change other photos' labels."""
    return path.endswith("/" + LABELS_CSV) or PurePosixPath(path).suffix.lower() in (
        SIDECAR_SUFFIXES
    )


def label_sources(photo: str) -> tuple[list[str], list[str]]:
    """(sidecar names, labels.csv paths) that may hold labels of ``photo``, whether or not
    they exist: its .json/.txt by full name and by stem (both suffix cases), and the
    labels.csv of its folder and every folder above it up to raw/."""
    pp = PurePosixPath(photo)
    names = {pp.name, pp.stem}
    sides = [
        f"{pp.parent}/{n}{s}" for n in sorted(names) for s in (".json", ".txt", ".JSON", ".TXT")
    ]
    csvs = [f"{f}/{LABELS_CSV}" for f in pp.parents if f.parts[:1] == (RAW,)]
    return [q for q in sides if q != photo], csvs


def read_labels(
    volume: Volume,
    photo_paths: list[str],
    sidecars: list[FileStat],
    complete: bool = True,
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Labels for each photo path from labels.csv files and per-photo sidecars, and the
    warnings met on the way (each naming the file, and the line for a csv row).

    A sidecar next to the photo wins over a csv; a deeper csv wins over a shallower one.
    ``complete``: ``photo_paths`` are all the photos there are, so a csv row matching none
    of them is reported (a change set's sync passes only the photos it touches).
    """
    warnings: list[str] = []
    warn = warnings.append
    labels: dict[str, dict[str, str]] = {p: {} for p in photo_paths}
    names = _Names(photo_paths)
    # Shallow csvs first, so deeper ones overwrite them.
    csvs = [s for s in sidecars if s.path.endswith("/" + LABELS_CSV)]
    for st in sorted(csvs, key=lambda s: s.path.count("/")):
        text = _read_text(volume, st, MAX_LABELS_CSV_BYTES, warn)
        if text is None:
            continue
        try:
            rows = _csv_rows(st.path, text, warn)
        except Exception as e:  # whatever went wrong, it stays this file's problem
            warn(f"{st.path}: cannot read ({type(e).__name__}: {e}); its labels were not applied")
            continue
        folder = str(PurePosixPath(st.path).parent)
        unmatched, by_case, ambiguous = [], [], []
        for line, name, values in rows:
            targets, how = names.match(folder, name)
            if how == "case":
                by_case.append((line, name, targets[0]))
            elif how == "ambiguous":
                ambiguous.append((line, name, targets))
                continue
            elif not targets:
                unmatched.append((line, name))
            for t in targets:
                labels[t].update(values)
        _warn_matches(st.path, folder, unmatched if complete else [], by_case, ambiguous, warn)
    stats = {s.path: s for s in sidecars}
    for side, photo in sorted(sidecar_map(set(labels) | set(stats)).items()):
        if photo not in labels or side not in stats:
            continue
        text = _read_text(volume, stats[side], MAX_SIDECAR_BYTES, warn)
        if text is None:
            continue
        try:
            if side.lower().endswith(".txt"):
                notes = _Notes()
                if caption := _clip(text.strip(), notes, "the caption"):
                    labels[photo]["caption"] = caption
                notes.report(side, warn)
            else:
                labels[photo].update(_json_labels(side, text, warn))
        except Exception as e:
            warn(f"{side}: cannot read ({type(e).__name__}: {e}); no labels taken")
    fitted = {p: fit_labels(p, v, warn) for p, v in labels.items()}
    return fitted, [redact_text(w) for w in warnings]  # a warning may quote a csv cell


def folded(name: str) -> str:
    """A name as people mean it: NFC (macOS writes NFD names; a spreadsheet types NFC) and
    without case (``LUNA.jpg`` for ``luna.jpg``)."""
    return unicodedata.normalize("NFC", name).casefold()


class _Names:
    """Which photos a labels.csv row names: a path relative to the csv's folder, or a bare
    file name (then every photo of that name below the folder), matched exactly, then as the
    same text in another Unicode form (NFC), then ignoring case when only one photo fits."""

    def __init__(self, photo_paths: list[str]):
        self.exact = set(photo_paths)
        self.nfc: dict[str, list[str]] = {}
        self.fold: dict[str, list[str]] = {}
        # (csv folder, file name) -> photos of that name in it or below, per form
        self.below: dict[tuple[str, str], list[str]] = {}
        self.below_nfc: dict[tuple[str, str], list[str]] = {}
        self.below_fold: dict[tuple[str, str], list[str]] = {}
        for p in photo_paths:
            self.nfc.setdefault(unicodedata.normalize("NFC", p), []).append(p)
            self.fold.setdefault(folded(p), []).append(p)
            pp = PurePosixPath(p)
            nfc, fold = unicodedata.normalize("NFC", pp.name), folded(pp.name)
            for parent in map(str, pp.parents):
                self.below.setdefault((parent, pp.name), []).append(p)
                self.below_nfc.setdefault((unicodedata.normalize("NFC", parent), nfc), []).append(p)
                self.below_fold.setdefault((folded(parent), fold), []).append(p)

    def match(self, folder: str, name: str) -> tuple[list[str], str]:
        """(photos, how): how is "exact", "case" (one photo, ignoring case), "ambiguous"
        (several photos ignoring case: none labelled) or "" (no photo)."""
        path = f"{folder}/{name}"
        if path in self.exact:
            return [path], "exact"
        if found := self.below.get((folder, name)):
            return found, "exact"
        nfc_folder = unicodedata.normalize("NFC", folder)
        nfc_name = unicodedata.normalize("NFC", name)
        if found := self.nfc.get(f"{nfc_folder}/{nfc_name}"):
            return found, "exact"
        if found := self.below_nfc.get((nfc_folder, nfc_name)):
            return found, "exact"
        found = self.fold.get(folded(path)) or self.below_fold.get((folded(folder), folded(name)))
        if not found:
            return [], ""
        if len({PurePosixPath(p).name for p in found}) > 1:
            return found, "ambiguous"
        return found, "case"


def _warn_matches(
    path: str,
    folder: str,
    unmatched: list[tuple[int, str]],
    by_case: list[tuple[int, str, str]],
    ambiguous: list[tuple[int, str, list[str]]],
    warn: Warn,
) -> None:
    """One warning per kind for a csv's rows that named no photo, or one only ignoring case."""
    if unmatched:
        line, name = unmatched[0]
        warn(
            f"{path}: {len(unmatched)} row(s) name no photo here (line {line}: {name!r}); "
            "their labels were not applied"
        )
    if by_case:
        line, name, photo = by_case[0]
        warn(
            f"{path}: {len(by_case)} row(s) matched a photo only ignoring case (line {line}: "
            f"{name!r} for {photo.removeprefix(folder + '/')!r}); their labels were applied"
        )
    if ambiguous:
        line, name, photos = ambiguous[0]
        shown = ", ".join(repr(p.removeprefix(folder + "/")) for p in photos[:3])
        warn(
            f"{path}: {len(ambiguous)} row(s) match several photos only ignoring case (line "
            f"{line}: {name!r} for {shown}); their labels were not applied"
        )


def _read_text(volume: Volume, st: FileStat, limit: int, warn: Warn) -> str | None:
    """A sidecar's text, or None (with a warning saying why) when it cannot be used."""
    if st.problem:
        warn(f"{st.path}: {st.problem}; not read")
        return None
    try:
        data = volume.read_bytes(st.path, max_bytes=limit)
    except FileNotFoundError:  # removed since the scan: the next run sees it gone
        return None
    except FileTooLarge as e:
        warn(f"{st.path}: {e.size:,} bytes, over the {limit:,}-byte limit; not read")
        return None
    except (OSError, ValueError) as e:
        warn(f"{st.path}: cannot read ({getattr(e, 'strerror', None) or e}); not read")
        return None
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                warn(f"{st.path}: starts like {encoding} text but is not; not read")
                return None
    if b"\x00" in data:
        warn(f"{st.path}: binary content, not text; not read")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Spreadsheets on Windows save "CSV" as cp1252. Reading it so keeps its labels (accents
    # and all) where dropping the file would lose them; latin-1 takes any byte left over.
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        warn(f"{st.path}: not UTF-8 (read as {encoding})")
        return text
    return None  # unreachable: latin-1 decodes any byte


def _csv_rows(path: str, text: str, warn: Warn) -> list[tuple[int, str, dict[str, str]]]:
    """(line, file name, labels) for each row of one labels.csv, warning about what it
    skips."""
    # The module-wide default (128 KB) would fail a whole file on one long cell; the file
    # itself is capped, so its cap is the field limit too.
    if csv.field_size_limit() < MAX_LABELS_CSV_BYTES:
        csv.field_size_limit(MAX_LABELS_CSV_BYTES)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        warn(f"{path}: empty (no header row); no labels")
        return []
    columns = [h.strip() for h in header]
    lowered = [c.lower() for c in columns]
    if "file" not in lowered:
        warn(f"{path}: no 'file' column; its labels were not applied")
        return []
    file_col = lowered.index("file")
    repeated_columns = sorted({c for c in lowered if c and lowered.count(c) > 1})
    if repeated_columns:
        first = repeated_columns[0]
        at = [i + 1 for i, c in enumerate(lowered) if c == first]
        warn(
            f"{path}: {len(repeated_columns)} column name(s) in the header more than once "
            f"({first!r} in columns {', '.join(map(str, at))}); "
            + (
                "the first 'file' column names the photo, the other's cells are ignored"
                if first == "file"
                else "for each row the last non-empty cell wins"
            )
        )
    out: list[tuple[int, str, dict[str, str]]] = []
    nameless: list[int] = []
    ragged: list[int] = []
    lines: dict[str, list[int]] = {}
    notes = _Notes()
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            line = reader.line_num
            if len(row) != len(columns):
                ragged.append(line)
            name = row[file_col].strip() if file_col < len(row) else ""
            if not name:
                nameless.append(line)
                continue
            lines.setdefault(name, []).append(line)
            values = {}
            for key, cell in zip(columns, row, strict=False):  # extra cells have no column
                if key and key.lower() != "file" and cell.strip():
                    where = f"line {line}, {_key(key, notes)!r}"
                    values[_key(key, notes)] = _clip(cell.strip(), notes, where)
            out.append((line, name, values))
    except csv.Error as e:
        warn(f"{path}: not valid CSV at line {reader.line_num} ({e}); later rows not applied")
    if ragged:
        warn(
            f"{path}: {len(ragged)} row(s) with a different number of fields than the header's "
            f"{len(columns)} ({_lines(ragged)}); extra fields ignored, missing ones empty"
        )
    if nameless:
        warn(
            f"{path}: {len(nameless)} row(s) with an empty 'file' cell ({_lines(nameless)}); "
            "they name no photo: their labels were not applied"
        )
    notes.report(path, warn)
    repeated = {n: ls for n, ls in lines.items() if len(ls) > 1}
    if repeated:
        name, ls = next(iter(repeated.items()))
        warn(
            f"{path}: {len(repeated)} file(s) listed more than once ({name!r} on "
            f"{_lines(ls)}); the last row wins"
        )
    return out


def _json_labels(path: str, text: str, warn: Warn) -> dict[str, str]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        warn(f"{path}: invalid JSON (line {e.lineno}: {e.msg}); no labels taken")
        return {}
    except RecursionError:
        warn(f"{path}: JSON nested too deeply to read; no labels taken")
        return {}
    except ValueError as e:  # e.g. an integer past Python's digit limit
        warn(f"{path}: JSON not readable ({str(e).split(';')[0]}); no labels taken")
        return {}
    if not isinstance(obj, dict):
        warn(f"{path}: a JSON {type(obj).__name__}, not an object; no labels taken")
        return {}
    out, notes, mended = {}, _Notes(), []
    for key, value in obj.items():
        if value is None or not str(key).strip():
            continue
        if isinstance(value, dict | list):  # nested: kept as JSON text, searchable as words
            value = json.dumps(value, ensure_ascii=False)
        key, value = _mended(str(key), mended), _mended(str(value), mended)
        key = _key(key, notes)
        if text_value := _clip(value.strip(), notes, repr(key)):
            out[key] = text_value
    if mended:
        warn(
            f"{path}: {len(mended)} label key(s) or value(s) hold a lone surrogate escape "
            f"(like \\ud800, half a character; first in {mended[0]!r}); replaced with U+FFFD"
        )
    notes.report(path, warn)
    return out


def _mended(text: str, mended: list[str]) -> str:
    """``text`` with lone surrogates (a JSON ``"\\ud800"`` escape decodes to one; nothing
    can store or encode it) replaced by U+FFFD; the mended text is noted in ``mended``."""
    fixed = _LONE_SURROGATE.sub(REPLACEMENT, text)
    if fixed != text:
        mended.append(fixed[:40])
    return fixed


@dataclass
class _Notes:
    """What was done to one file's labels, for one warning each kind (a bad csv may have
    thousands of cells)."""

    long: list[tuple[str, int]] = field(default_factory=list)  # (where, length) of cut values
    redacted: int = 0  # keys and values holding a secret or token-shaped text

    def report(self, path: str, warn: Warn) -> None:
        if self.long:
            where, size = self.long[0]
            warn(
                f"{path}: {len(self.long)} value(s) truncated to {MAX_LABEL_CHARS:,} characters "
                f"({where} was {size:,})"
            )
        if self.redacted:
            warn(
                f"{path}: {self.redacted} label key(s) or value(s) held a secret or "
                f"token-shaped text; stored with it replaced by {REDACTED}"
            )


def _redacted(text: str, notes: _Notes) -> str:
    """``text`` as everything adrag writes is: without secrets (labels reach the tables, their
    statistics and change feed, and the index)."""
    clean = redact_text(text)
    notes.redacted += clean != text
    return clean


def _key(key: str, notes: _Notes) -> str:
    return _redacted(key.strip(), notes)[:MAX_KEY_CHARS]


def _clip(value: str, notes: _Notes, where: str) -> str:
    """``value`` redacted and cut to :data:`MAX_LABEL_CHARS`; a cut one is noted."""
    value = _redacted(value, notes)  # before the cut, which could leave a token unrecognised
    if len(value) > MAX_LABEL_CHARS:
        notes.long.append((where, len(value)))
    return value[:MAX_LABEL_CHARS]


def fit_labels(photo: str, labels: dict[str, str], warn: Warn) -> dict[str, str]:
    """Keep one photo's labels within :data:`MAX_LABELS_BYTES`, cutting the last keys."""
    budget, out, cut = MAX_LABELS_BYTES, {}, []
    for key, value in sorted(labels.items()):
        size = len(key.encode()) + len(value.encode()) + 2  # a separator each
        if size <= budget:
            out[key], budget = value, budget - size
            continue
        room = budget - len(key.encode()) - 2
        if room > 0:  # the first label that does not fit is cut, the later ones dropped
            out[key] = value.encode()[:room].decode("utf-8", "ignore")
        budget = 0
        cut.append(key)
    if cut:
        warn(
            f"{photo}: labels over {MAX_LABELS_BYTES:,} bytes in all; {len(cut)} cut or "
            f"dropped ({', '.join(repr(k) for k in cut[:3])}{', …' if len(cut) > 3 else ''})"
        )
    return out


def _lines(numbers: list[int], shown: int = 3) -> str:
    head = ", ".join(str(n) for n in numbers[:shown])
    return (
        ("line " if len(numbers) == 1 else "lines ")
        + head
        + (", …" if len(numbers) > shown else "")
    )
