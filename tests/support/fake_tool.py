"""A deterministic stand-in for the agent's tool, for tests of the conversation policy.

The policy is what is under test there; the photos it returns are real files in a temporary
volume, and every call is recorded so a test can say what was searched and generated.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from PIL import Image

from adrag_app.service.tool import (
    TOOL_NAME,
    EditUnsupported,
    ToolContext,
    check_arguments,
    check_edits,
    merge_spec,
)


def png(path: Path, color: tuple[int, int, int] = (120, 80, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, "PNG")


def image_id(path: str) -> str:
    """A stable image id per photo path (the real ones are sha256 of the bytes)."""
    return hashlib.sha256(path.encode()).hexdigest()


class FakeTool:
    """A deterministic stand-in for the service: three photos per description, files real.

    ``fail`` (an exception) is raised by the next generation; ``paths`` overrides what a
    retrieval returns (to test path checks); ``ad_path`` overrides the generated ad's path.
    """

    name = TOOL_NAME

    def __init__(self, volume: Path) -> None:
        self._volume = volume
        self.calls: list[tuple[dict[str, Any], ToolContext]] = []
        self.fail: BaseException | None = None
        self.search_error: BaseException | None = None
        self.paths: list[str] | None = None
        self.ad_path: str | None = None
        self.edits: list[tuple[dict[str, Any], dict[str, Any], ToolContext]] = []
        self.unsupported: set[str] = set()  # edit kinds this tool "cannot draw"

    @property
    def volume(self) -> Path:
        return self._volume

    def photos(self, description: str, exclude: tuple[str, ...] = ()) -> list[str]:
        """The top-3 for ``description``: the first three of its photos not in ``exclude``."""
        slug = re.sub(r"[^a-z0-9]+", "-", description.lower()).strip("-")[:30]
        ranked = (f"raw/{slug}-{i}.png" for i in range(3 + len(exclude)))
        return [p for p in ranked if image_id(p) not in exclude][:3]

    def __call__(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        description, seed_index, generate = check_arguments(arguments)
        self.calls.append((dict(arguments), context))
        photos = self.photos(description, tuple(context.exclude))
        for p in photos:
            if not (self._volume / p).exists():
                png(self._volume / p)
        if not generate:
            if self.search_error is not None:
                raise self.search_error
            paths = self.paths if self.paths is not None else photos
            return {
                "mode": "retrieve",
                "candidates": [
                    {"rank": i, "path": p, "score": 0.9 - i / 10, "image_id": image_id(p)}
                    for i, p in enumerate(paths)
                ],
            }
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        ad = self.ad_path or f"ads/{Path(photos[seed_index]).stem}.png"
        if not ad.startswith(("/", "..")):
            png(self._volume / ad, (10, 200, 10))
        return {
            "mode": "generate",
            "ad": {"path": ad, "sidecar": ad.replace(".png", ".json")},
            "seed": {
                "rank": seed_index,
                "path": photos[seed_index],
                "image_id": image_id(photos[seed_index]),
            },
            "brand": context.brand or "brand/bottle.png",
            "generator": "fake",
            "model": "fake-1",
        }

    def searches(self) -> list[str]:
        return [a["description"] for a, _ in self.calls if not a.get("generate")]

    def generations(self) -> list[dict[str, Any]]:
        return [a for a, _ in self.calls if a.get("generate")]

    def edit_ad(
        self, ad: dict[str, Any], edits: dict[str, Any], context: ToolContext
    ) -> dict[str, Any]:
        """A new version: a real file beside the parent's, never the parent itself."""
        edits = check_edits(edits)
        self.edits.append((dict(ad), dict(edits), context))
        unsupported = sorted(set(edits) & self.unsupported)
        if len(unsupported) == len(edits):
            raise EditUnsupported(unsupported)
        version = int(ad.get("version") or 1) + 1
        path = f"{ad['path'].removesuffix('.png')}-v{version}-{len(self.edits)}.png"
        png(self._volume / path, (10, 200, 10 + 20 * len(self.edits)))
        return {
            "mode": "edit",
            "ad": {"path": path, "sidecar": path.replace(".png", ".json")},
            "seed": dict(ad.get("seed") or {}),
            "brand": ad.get("brand", ""),
            "generator": "fake",
            "model": "fake-1",
            "version": version,
            "parent": ad["path"],
            "edits": edits,
            "spec": merge_spec(ad.get("spec") or {}, edits),
            "unsupported": unsupported,
        }
