"""The agent's one tool: the image-gen service behind a minimal schema.

The model-facing arguments are exactly ``description``, ``seed_index`` and ``generate``
(:data:`TOOL_SCHEMA`). What a model should not choose — the segment, the brand image, the
label filters of the current proposal, the photos the marketer rejected, who is asking —
travels beside them as a :class:`ToolContext` bound by the agent from its own state.

The tool returns paths (relative to the volume) and small JSON, never image bytes:

* retrieval (``generate=false``): ``{"mode": "retrieve", "candidates": [{"rank", "path",
  "score", "image_id", "labels"}, ...]}`` — the top-3 for the description;
* generation (``generate=true``): ``{"mode": "generate", "ad": {"path", "sidecar"},
  "seed": {"rank", "path", "image_id"}, "generator", "model"}`` for photo ``seed_index`` of
  that same top-3 (the service is deterministic, so it is the photo the marketer saw).

Errors are raised, not returned: the agent turns them into words for the marketer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from adrag_app.generators import Generator
from adrag_app.service import ad_service as service
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import Settings, load_settings

TOOL_NAME = "find_or_make_ad"
LABELS_TTL_S = 60.0
TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "name": TOOL_NAME,
    "description": (
        "Search the brand's photo library for the top-3 photos matching a pet description "
        "(generate=false), or compose the ad from photo seed_index of that same top-3 and the "
        "brand image (generate=true). Returns paths inside the storage volume and small JSON."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "description": "The pet photo to look for, e.g. 'a beagle in a sunny park'.",
                "maxLength": service.MAX_DESCRIPTION,
            },
            "seed_index": {
                "type": "integer",
                "minimum": 0,
                "maximum": service.TOP_K - 1,
                "description": "Which of the top-3 photos to compose the ad from (0 = best).",
            },
            "generate": {
                "type": "boolean",
                "description": "false: only search; true: generate and save the ad.",
            },
        },
        "required": ["description"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class ToolContext:
    """Bound by the agent, not chosen by a model.

    ``exclude``: image ids that must not be among the top-3 (rejected in this conversation).
    ``like``: an image id: the top-3 are the photos most like it ("more like this"), not the
    description's best matches. A generation must carry the ``exclude`` and ``like`` its photos
    were searched with, since the service searches again and ``seed_index`` points into that
    top-3.
    """

    segment: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    brand: str | None = None
    user: str = ""
    exclude: tuple[str, ...] = ()
    like: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_arguments(arguments: dict[str, Any]) -> tuple[str, int, bool]:
    """``(description, seed_index, generate)`` from tool-call arguments, validated."""
    unknown = set(arguments) - set(TOOL_SCHEMA["parameters"]["properties"])
    if unknown:
        raise ValueError(f"unknown tool argument(s): {', '.join(sorted(unknown))}")
    description = arguments.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ValueError("the tool needs a non-empty description")
    seed_index = arguments.get("seed_index", 0)
    if isinstance(seed_index, bool) or not isinstance(seed_index, int):
        raise ValueError("seed_index must be an integer")
    if not 0 <= seed_index < service.TOP_K:
        raise ValueError(f"seed_index must be between 0 and {service.TOP_K - 1}")
    generate = arguments.get("generate", False)
    if not isinstance(generate, bool):
        raise ValueError("generate must be true or false")
    return description, seed_index, generate


class Tool(Protocol):
    """What the agent needs from its tool (tests substitute fakes)."""

    name: str

    @property
    def volume(self) -> Path: ...

    def __call__(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]: ...


class ServiceTool:
    """The real tool: :func:`service.retrieve` and :func:`service.generate_ad`."""

    name = TOOL_NAME

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        generator: Generator | None = None,
        instance: dg.DagsterInstance | None = None,
        index: MilvusIndex | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.generator = generator
        self.instance = instance
        self.index = index
        self._labels: tuple[float, dict[str, dict[str, int]]] | None = None

    @property
    def volume(self) -> Path | str:
        """The volume: a folder, or an object-store URL (``open_volume`` takes either)."""
        return self.settings.volume

    def label_counts(self) -> dict[str, dict[str, int]]:
        """The labels of the photos in the live index (``{label: {value: photos}}``), for the
        planner. Kept for a minute: a proposal should not cost a scan of the collection."""
        now = time.monotonic()
        if self._labels is not None and now - self._labels[0] < LABELS_TTL_S:
            return self._labels[1]
        with service._opened(self.settings, self.index) as index:
            counts = index.label_counts()
        self._labels = (now, counts)
        return counts

    def __call__(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        description, seed_index, generate = check_arguments(arguments)
        filters = dict(context.filters) or None
        exclude = tuple(context.exclude)
        if not generate:
            found = service.retrieve(
                description,
                service.TOP_K,
                filters,
                settings=self.settings,
                index=self.index,
                exclude=exclude,
                like=context.like,
            )
            return {
                "mode": "retrieve",
                "candidates": [
                    {
                        "rank": c.rank,
                        "path": c.path,
                        "score": round(float(c.score), 4),
                        "image_id": c.image_id,
                        "labels": dict(c.labels),
                    }
                    for c in found
                ],
            }
        ad = service.generate_ad(
            description,
            seed_index,
            brand=context.brand,
            segment=context.segment,
            user=context.user,
            filters=filters,
            exclude=exclude,
            like=context.like,
            settings=self.settings,
            generator=self.generator,
            instance=self.instance,
            index=self.index,
        )
        meta = ad.metadata
        return {
            "mode": "generate",
            "ad": {"path": ad.path, "sidecar": ad.sidecar},
            "seed": {
                "rank": meta.get("seed_index", seed_index),
                "path": meta.get("seed_path", ""),
                "image_id": meta.get("seed_image_id", ""),
            },
            "brand": meta.get("brand_path", ""),
            "generator": meta.get("generator", ""),
            "model": meta.get("model", ""),
        }
