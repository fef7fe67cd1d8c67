"""Ad placements as data: the package's ``placements.yaml``, overridable per volume.

A volume's ``campaigns/placements.yaml`` (same shape) changes fields of a known placement or
adds new ones; a field it leaves out keeps the package's value. Every problem in either file is
reported at once, one line each, naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adrag_app.yaml_text import parse_yaml
from adrag_assets.volume import CAMPAIGNS, Volume

PLACEMENTS_FILE = f"{CAMPAIGNS}/placements.yaml"
# Kontext's accepted aspect ratios: a placement asks for one of them.
ASPECT_RATIOS = frozenset(
    [
        "1:1",
        "16:9",
        "9:16",
        "4:3",
        "3:4",
        "3:2",
        "2:3",
        "4:5",
        "5:4",
        "21:9",
        "9:21",
        "2:1",
        "1:2",
        "match_input_image",
    ]
)


class PlacementError(ValueError):
    """A placements file that cannot be used; the message lists every problem."""


class SafeZone(BaseModel):
    """Fractions of the frame kept free of text and logo (the platform's UI covers them)."""

    model_config = ConfigDict(extra="forbid")
    top: float = Field(0.0, ge=0, lt=0.5)
    bottom: float = Field(0.0, ge=0, lt=0.5)
    left: float = Field(0.0, ge=0, lt=0.5)
    right: float = Field(0.0, ge=0, lt=0.5)


class TextLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    headline: int = Field(gt=0, le=200)
    headline_recommended: int | None = Field(None, gt=0, le=200)
    long_headline: int | None = Field(None, gt=0, le=300)
    primary_text: int = Field(125, gt=0, le=2000)


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    label: str
    platform: str
    width: int = Field(ge=200, le=4096)
    height: int = Field(ge=200, le=4096)
    aspect_ratio: str
    safe_zone: SafeZone = Field(default_factory=SafeZone)
    limits: TextLimits

    @field_validator("aspect_ratio")
    @classmethod
    def _known_ratio(cls, value: str) -> str:
        if value not in ASPECT_RATIOS:
            raise ValueError(
                f"{value!r} is not an aspect ratio the image model accepts "
                f"({', '.join(sorted(ASPECT_RATIOS))})"
            )
        return value

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def safe_box(self) -> tuple[int, int, int, int]:
        """The part of the frame where text and logo may go, in pixels (x0, y0, x1, y1)."""
        z = self.safe_zone
        return (
            round(self.width * z.left),
            round(self.height * z.top),
            self.width - round(self.width * z.right),
            self.height - round(self.height * z.bottom),
        )

    def headline_limit(self) -> int:
        return self.limits.headline


def _problems(error: ValidationError, source: str, prefix: str) -> list[str]:
    out = []
    for e in error.errors():
        where = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        out.append(f"{source}: {where}: {e['msg']}")
    return out


def _parse(text: str, source: str) -> dict[str, Any]:
    data = parse_yaml(text, source, PlacementError) or {}
    if not isinstance(data, dict) or not isinstance(data.get("placements"), dict):
        raise PlacementError(f"{source}: expected a mapping 'placements:' of name -> placement")
    return data["placements"]


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_placements(volume: Volume | None = None) -> dict[str, Placement]:
    """Every placement by name: the package's, with the volume's overrides applied."""
    builtin = resources.files(__package__).joinpath("placements.yaml").read_text("utf-8")
    raw = {k: dict(v or {}) for k, v in _parse(builtin, "placements.yaml (package)").items()}
    source = "placements.yaml (package)"
    if volume is not None:
        try:
            text = volume.read_bytes(PLACEMENTS_FILE).decode("utf-8")
        except FileNotFoundError:
            text = None
        if text is not None:
            source = volume.display(PLACEMENTS_FILE)
            for name, fields in _parse(text, source).items():
                if not isinstance(fields, Mapping):
                    raise PlacementError(f"{source}: placements.{name}: expected a mapping")
                raw[str(name)] = _merge(raw.get(str(name), {}), fields)
    placements, problems = {}, []
    for name, fields in raw.items():
        try:
            placements[name] = Placement.model_validate({**fields, "name": name})
        except ValidationError as e:
            problems += _problems(e, source, f"placements.{name}")
    if problems:
        raise PlacementError("\n".join(problems))
    return placements


def choose(placements: Mapping[str, Placement], names: str | list[str] | None) -> list[Placement]:
    """The placements named (``"all"``, one name, a comma list or a list), in file order."""
    if names is None or names == "all" or names == ["all"]:
        return list(placements.values())
    wanted = names.split(",") if isinstance(names, str) else list(names)
    wanted = [n.strip() for n in wanted if n.strip()]
    unknown = [n for n in wanted if n not in placements]
    if unknown:
        raise ValueError(
            f"unknown placement(s) {', '.join(unknown)}; known: {', '.join(placements)} or all"
        )
    return [placements[n] for n in dict.fromkeys(wanted)]
