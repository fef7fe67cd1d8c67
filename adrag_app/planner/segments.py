"""The built-in planner's curated segments: a data file, validated, with clear errors.

The default is ``segments.yaml`` beside this module (packaged with adrag_app). A brand replaces
it with ``campaigns/segments.yaml`` in its volume, in the same shape. An idea's description
names its pet as ``{breed}``; :meth:`Idea.fill` puts in the breed the photo library has (see
``BuiltinPlanner``), so proposals only name pets the index can find.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from adrag_app.yaml_text import parse_yaml
from adrag_assets.volume import CAMPAIGNS, open_volume

VOLUME_FILE = f"{CAMPAIGNS}/segments.yaml"
MAX_FILE_BYTES = 1_000_000
SPECIES = ("dog", "cat")


class SegmentsFileError(ValueError):
    """The segments file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Idea:
    template: str  # a description with "{breed}" where the pet's breed goes
    reason: str
    breed: str  # the breed curated for it, used when the library has it
    species: str  # "dog" or "cat": a stand-in breed must be of the same species

    def fill(self, breed: str) -> str:
        return self.template.replace("{breed}", breed)

    @property
    def description(self) -> str:
        return self.fill(self.breed)


@dataclass(frozen=True)
class Segment:
    name: str
    keywords: tuple[str, ...]  # words and phrases that point at this segment
    ideas: tuple[Idea, ...]


@dataclass(frozen=True)
class Catalog:
    segments: tuple[Segment, ...]
    fallback_ideas: tuple[Idea, ...]  # for segments nobody curated
    source: str  # the file it came from, for messages


def _text(value: Any, where: str, field: str, *, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SegmentsFileError(f"{where}: {field!r} must be a non-empty string")
    text = " ".join(value.split())
    if len(text) > max_len:
        raise SegmentsFileError(f"{where}: {field!r} is longer than {max_len} characters")
    return text


def _idea(data: Any, where: str) -> Idea:
    if not isinstance(data, dict):
        raise SegmentsFileError(f"{where}: an idea must be a mapping with description, reason")
    unknown = set(data) - {"description", "reason", "breed", "species"}
    if unknown:
        raise SegmentsFileError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    template = _text(data.get("description"), where, "description")
    if template.count("{breed}") != 1:
        raise SegmentsFileError(f"{where}: the description must contain {{breed}} exactly once")
    species = _text(data.get("species"), where, "species").lower()
    if species not in SPECIES:
        raise SegmentsFileError(f"{where}: species must be one of {', '.join(SPECIES)}")
    breed = _text(data.get("breed"), where, "breed").lower()
    return Idea(template, _text(data.get("reason"), where, "reason"), breed, species)


def _ideas(data: Any, where: str) -> tuple[Idea, ...]:
    if not isinstance(data, list) or not data:
        raise SegmentsFileError(f"{where}: 'ideas' must be a non-empty list")
    return tuple(_idea(item, f"{where}, idea {i + 1}") for i, item in enumerate(data))


def parse_catalog(text: str, source: str) -> Catalog:
    """A :class:`Catalog` from YAML text; :class:`SegmentsFileError` naming ``source`` and the
    entry at fault otherwise."""
    data = parse_yaml(text, source, SegmentsFileError)
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        raise SegmentsFileError(f"{source}: expected a mapping with a 'segments' list")
    segments, names = [], set()
    for i, item in enumerate(data["segments"]):
        where = f"{source}: segment {i + 1}"
        if not isinstance(item, dict):
            raise SegmentsFileError(f"{where}: must be a mapping with name, keywords, ideas")
        name = _text(item.get("name"), where, "name")
        where = f"{source}: segment {i + 1} ({name!r})"
        if name.lower() in names:
            raise SegmentsFileError(f"{where}: the name appears twice")
        names.add(name.lower())
        keywords = item.get("keywords") or []
        if not isinstance(keywords, list):
            raise SegmentsFileError(f"{where}: 'keywords' must be a list of strings")
        segments.append(
            Segment(
                name,
                tuple(_text(k, where, "keywords") for k in keywords),
                _ideas(item.get("ideas"), where),
            )
        )
    if not segments:
        raise SegmentsFileError(f"{source}: 'segments' is empty")
    fallback = _ideas(data.get("fallback_ideas"), f"{source}: fallback_ideas")
    return Catalog(tuple(segments), fallback, source)


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The packaged segments (a broken packaged file is a bug: it raises)."""
    text = resources.files("adrag_app.planner").joinpath("segments.yaml").read_text("utf-8")
    return parse_catalog(text, "adrag_app/planner/segments.yaml")


def load_catalog(volume: str | Path | None) -> Catalog:
    """The volume's ``campaigns/segments.yaml`` when there is one, else the packaged default."""
    if volume is None:
        return default_catalog()
    store = open_volume(volume)
    found = store.stat(VOLUME_FILE)
    if found is None:
        return default_catalog()
    path = store.display(VOLUME_FILE)
    if found.size > MAX_FILE_BYTES:
        raise SegmentsFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = store.read_bytes(VOLUME_FILE, MAX_FILE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SegmentsFileError(f"{path}: cannot be read ({type(e).__name__})") from e
    return parse_catalog(text, str(path))
