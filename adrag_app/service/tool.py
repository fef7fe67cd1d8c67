"""The agent's one tool: the image-gen service behind a minimal schema.

The model-facing arguments are exactly ``description``, ``seed_index`` and ``generate``
(:data:`TOOL_SCHEMA`). What a model should not choose — the segment, the brand image, the
label filters of the current proposal, the photos the marketer rejected, who is asking —
travels beside them as a :class:`ToolContext` bound by the agent from its own state.

The tool returns paths (relative to the volume) and small JSON, never image bytes:

* retrieval (``generate=false``): ``{"mode": "retrieve", "candidates": [{"rank", "path",
  "score", "image_id", "labels"}, ...]}`` — the top-3 for the description;
* generation (``generate=true``): a creative set (:func:`make_creatives`) of photo
  ``seed_index`` of that same top-3 (the service is deterministic, so it is the photo the
  marketer saw) in the context's placements: ``{"mode": "generate", "ad": {"path",
  "sidecar"}, "creatives": [{"path", "placement", "width", "height", "headline", ...}],
  "seed": {"rank", "path", "image_id"}, "generator", "model"}``; ``ad`` is its first creative.

Errors are raised, not returned: the agent turns them into words for the marketer.

Edits to an ad already made go through a second, explicit seam, :meth:`ServiceTool.edit_ad`
``(ad, edits, context)``: ``edits`` is plain data (:func:`check_edits`), e.g.
``{"headline": "Home at last", "tone": ["warmer"]}``, ``{"placement": ["story"]}``,
``{"product": {"position": "left", "scale": 1.25}}``, ``{"variant": 1}``. It returns the new
version, ``{"mode": "edit", "ad": {"path", "sidecar"}, "seed", "version", "parent", "edits",
"spec", "creatives", ...}``: new files (:func:`edit_creative`), each sidecar naming the
creative it was made from as its ``parent``; the parents are left as they were.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from adrag_app.access.roles import ROLE_NAMES, Person, require
from adrag_app.creative.layout import Look
from adrag_app.generators import Generator
from adrag_app.service import ad_service as service
from adrag_app.service.creatives import (
    DEFAULT_PLACEMENTS,
    Creative,
    Edit,
    edit_creative,
    edited_look,
    load_creative,
    make_creatives,
)
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import Settings, load_settings

TOOL_NAME = "find_or_make_ad"
EDIT_NAME = "edit_ad"
LABELS_TTL_S = 60.0
# What an edit can say (the agent reads them from the marketer's words, language.json).
TONES = ("warmer", "cooler", "brighter", "darker")
OPPOSITE_TONE = {"warmer": "cooler", "cooler": "warmer", "brighter": "darker", "darker": "brighter"}
POSITIONS = (
    "left", "right", "top", "bottom", "center",
    "top-left", "top-right", "bottom-left", "bottom-right",
)  # fmt: skip
MAX_HEADLINE = 120  # what the ad service prints at most; placements set their own limits
SCALE_RANGE = (0.25, 4.0)
_PLACEMENT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
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
    description's best matches. ``placements``: the sizes the ad is made in (the marketer's
    toggles). A generation must carry the ``exclude`` and ``like`` its photos
    were searched with, since the service searches again and ``seed_index`` points into that
    top-3.
    """

    segment: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    brand: str | None = None
    user: str = ""
    exclude: tuple[str, ...] = ()
    like: str = ""
    placements: tuple[str, ...] = ()  # the creative set's placements; () = DEFAULT_PLACEMENTS
    # Who signed in and their role (viewer, creator, admin); "" = no sign-in (laptop mode):
    # nothing is refused. The tool checks the role itself, whatever a model asked for.
    subject: str = ""
    email: str = ""
    role: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def person(self) -> Person | None:
        role = ROLE_NAMES.get(self.role)
        return Person(self.subject, self.email, role) if role and self.subject else None


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
    """The real tool: :func:`service.retrieve`, :func:`make_creatives` and
    :func:`edit_creative`."""

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
        if not generate:
            found = service.retrieve(
                description,
                service.TOP_K,
                dict(context.filters) or None,
                settings=self.settings,
                index=self.index,
                exclude=tuple(context.exclude),
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
        require(context.role, "generate")
        made = self._make_set(
            description,
            seed_index,
            context,
            placements=list(context.placements) or list(DEFAULT_PLACEMENTS),
        )
        return _set_output("generate", made, seed_index)

    # -- creative sets ---------------------------------------------------------------------

    def _make_set(
        self,
        description: str,
        seed_index: int,
        context: ToolContext,
        *,
        placements: list[str],
        headline: str | None = None,
        look: Look | None = None,
        parent: Creative | None = None,
    ) -> list[Creative]:
        """Photo ``seed_index`` of the description's top-3 x ``placements``."""
        return make_creatives(
            description,
            placements,
            1,
            seed_index=seed_index,
            headline=headline,
            segment=context.segment,
            look=look,
            brand=context.brand,
            user=context.user,
            person=context.person,
            filters=dict(context.filters) or None,
            exclude=tuple(context.exclude),
            like=context.like,
            settings=self.settings,
            generator=self.generator,
            instance=self.instance,
            index=self.index,
            contact_sheet=False,
            parent=parent,
        )

    def edit_ad(
        self, ad: Mapping[str, Any], edits: Mapping[str, Any], context: ToolContext
    ) -> dict[str, Any]:
        """A new version of the creative set ``ad`` (``{"path", "creatives": [...]}`` as this
        tool returned it) with ``edits`` applied; every creative of the new set records the
        one it was made from as its ``parent``, and nothing is overwritten.

        Headline, tone and product edits are :func:`edit_creative` calls, one per placement of
        the set; a placement edit renders the set's first creative in each placement asked
        for; "another variant" makes the set again from the next photo of the same top-3,
        keeping the headline and look of the version it replaces.
        """
        require(context.role, "generate")
        edits = check_edits(edits)
        paths = [str(c["path"]) for c in ad.get("creatives") or ()] or [str(ad.get("path"))]
        try:
            current = [load_creative(p, self.settings) for p in paths]
        except service.AdServiceError as e:
            raise service.AdServiceError(f"{e}; make the ad again") from e
        spec = merge_spec(ad.get("spec") or {}, edits)
        change = _as_edit(edits)
        seed_index = int((ad.get("seed") or {}).get("rank") or 0)
        if "variant" in edits:
            seed_index = (seed_index + int(edits["variant"])) % service.TOP_K
            first = current[0].metadata
            made = self._make_set(
                str(first["description"]),
                seed_index,
                context,
                placements=list(edits.get("placement") or [c.placement for c in current]),
                headline=change.headline or first["render"]["headline_override"],
                look=edited_look(Look(**first["render"]["look"]), change),
                parent=current[0],
            )
        else:
            # A placement edit renders the set's first creative in each placement asked for;
            # any other edit renders every creative of the set again.
            jobs = (
                [(current[0].path, replace(change, placement=n)) for n in edits["placement"]]
                if "placement" in edits
                else [(c.path, change) for c in current]
            )
            made = [
                edit_creative(
                    path,
                    job,
                    user=context.user,
                    person=context.person,
                    settings=self.settings,
                    generator=self.generator,
                    instance=self.instance,
                )
                for path, job in jobs
            ]
        lineage = {
            "version": int(ad.get("version") or 1) + 1,
            "parent": str(ad.get("path") or paths[0]),
            "edits": edits,
            "spec": spec,
        }
        return {**_set_output("edit", made, seed_index), **lineage, "unsupported": []}


# A step of each tone on the creative renderer's scales (Look.warmth, Look.brightness: -1..1).
TONE_STEPS = {
    "warmer": ("warmth", 0.5),
    "cooler": ("warmth", -0.5),
    "brighter": ("brightness", 0.4),
    "darker": ("brightness", -0.4),
}
# Where the conversation can put the product, as the layout names it; the centre is refused:
# it is where the pet is.
LAYOUT_POSITION = {"top": "top-right", "bottom": "bottom-right"}


def _as_edit(edits: Mapping[str, Any]) -> Edit:
    """The conversation's edit data as the creative renderer's :class:`Edit` (no placement)."""
    steps = {"warmth": 0.0, "brightness": 0.0}
    for tone in edits.get("tone") or ():
        name, step = TONE_STEPS[tone]
        steps[name] += step
    product = edits.get("product") or {}
    position = product.get("position")
    if position == "center":
        raise ValueError("the product cannot go in the centre: that is where the pet is")
    return Edit(
        headline=edits.get("headline"),
        warmth=steps["warmth"] or None,
        brightness=steps["brightness"] or None,
        product_position=LAYOUT_POSITION.get(position, position) if position else None,
        product_scale=float(product["scale"]) if "scale" in product else None,
    )


def _set_output(mode: str, made: list[Creative], seed_index: int) -> dict[str, Any]:
    """What the agent gets for a creative set: its first creative as the ad (path, sidecar)
    and every creative of the set as small JSON."""
    first = made[0].metadata
    return {
        "mode": mode,
        "ad": {"path": made[0].path, "sidecar": made[0].sidecar},
        "creatives": [c.as_dict() for c in made],
        "seed": {
            "rank": seed_index,
            "path": first.get("seed_path", ""),
            "image_id": first.get("seed_image_id", ""),
        },
        "brand": first.get("brand_path", ""),
        "generator": first.get("generator", ""),
        "model": first.get("model", ""),
    }


class Editor(Protocol):
    """A tool that can also edit the ads it made (the agent checks for ``edit_ad``)."""

    def edit_ad(
        self, ad: Mapping[str, Any], edits: Mapping[str, Any], context: ToolContext
    ) -> dict[str, Any]: ...


class EditUnsupported(ValueError):
    """None of the edits asked for can be applied by this tool."""

    def __init__(self, kinds: list[str]) -> None:
        super().__init__(
            f"this ad maker cannot apply {', '.join(kinds)} edits yet (they need the creative "
            "renderer); nothing was changed"
        )
        self.kinds = kinds


def check_edits(edits: Mapping[str, Any]) -> dict[str, Any]:
    """``edits`` validated and normalised; ValueError saying which part is wrong.

    ``headline``: the words (1-120 characters, one line); ``tone``: a list of
    :data:`TONES`; ``product``: ``{"position": one of POSITIONS, "scale": factor}`` (either);
    ``placement``: a list of placement names; ``variant``: how many variants on (>= 1).
    """
    if not isinstance(edits, Mapping) or not edits:
        raise ValueError("edits must be a non-empty object")
    unknown = set(edits) - {"headline", "tone", "product", "placement", "variant"}
    if unknown:
        raise ValueError(f"unknown edit(s): {', '.join(sorted(map(str, unknown)))}")
    out: dict[str, Any] = {}
    if "headline" in edits:
        headline = " ".join(str(edits["headline"] or "").split())
        if not headline or len(headline) > MAX_HEADLINE:
            raise ValueError(f"a headline must be 1 to {MAX_HEADLINE} characters")
        out["headline"] = headline
    if "tone" in edits:
        tone = edits["tone"]
        if not isinstance(tone, list) or not tone or not set(tone) <= set(TONES):
            raise ValueError(f"tone must be a list of {', '.join(TONES)}")
        out["tone"] = list(tone)
    if "product" in edits:
        product = edits["product"]
        if not isinstance(product, Mapping) or not product or set(product) - {"position", "scale"}:
            raise ValueError("product must be {position, scale}")
        if "position" in product and product["position"] not in POSITIONS:
            raise ValueError(f"product position must be one of {', '.join(POSITIONS)}")
        if "scale" in product:
            scale = product["scale"]
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise ValueError("product scale must be a number")
            if not SCALE_RANGE[0] <= float(scale) <= SCALE_RANGE[1]:
                raise ValueError(f"product scale must be between {SCALE_RANGE[0]} and 4")
        out["product"] = dict(product)
    if "placement" in edits:
        names = edits["placement"]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and _PLACEMENT.match(n) for n in names)
        ):
            raise ValueError("placement must be a list of placement names")
        out["placement"] = list(dict.fromkeys(names))
    if "variant" in edits:
        variant = edits["variant"]
        if isinstance(variant, bool) or not isinstance(variant, int) or variant < 1:
            raise ValueError("variant must be a whole number >= 1")
        out["variant"] = variant
    return out


def merge_spec(spec: Mapping[str, Any], edits: Mapping[str, Any]) -> dict[str, Any]:
    """What a version is: its parent's spec with ``edits`` on top. A headline or placement
    replaces the parent's; a tone step cancels its opposite or adds to the list; product
    scales multiply; variants add up."""
    out = json.loads(json.dumps(dict(spec)))  # a deep, JSON-safe copy
    if "headline" in edits:
        out["headline"] = edits["headline"]
    if "placement" in edits:
        out["placement"] = list(edits["placement"])
    for step in edits.get("tone") or ():
        tones = list(out.get("tone") or [])
        if OPPOSITE_TONE[step] in tones:
            tones.remove(OPPOSITE_TONE[step])
        else:
            tones.append(step)
        out["tone"] = tones
    if not out.get("tone"):
        out.pop("tone", None)
    if "product" in edits:
        product = dict(out.get("product") or {})
        if "position" in edits["product"]:
            product["position"] = edits["product"]["position"]
        if "scale" in edits["product"]:
            scale = float(product.get("scale") or 1.0) * float(edits["product"]["scale"])
            product["scale"] = round(min(max(scale, SCALE_RANGE[0]), SCALE_RANGE[1]), 3)
        out["product"] = product
    if "variant" in edits:
        out["variant"] = int(out.get("variant") or 0) + int(edits["variant"])
    return out
