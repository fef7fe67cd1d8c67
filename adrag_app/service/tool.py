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

Edits to an ad already made go through a second, explicit seam, :meth:`ServiceTool.edit_ad`
``(ad, edits, context)``: ``edits`` is plain data (:func:`check_edits`), e.g.
``{"headline": "Home at last", "tone": ["warmer"]}``, ``{"placement": ["story"]}``,
``{"product": {"position": "left", "scale": 1.25}}``, ``{"variant": 1}``. It returns the new
version, ``{"mode": "edit", "ad": {"path", "sidecar"}, "seed", "version", "parent", "edits",
"spec", "unsupported", ...}``: a new file, the parent left as it was. The default
implementation regenerates the ad locally (headline, tone, variant); the creative renderer
(placements, product layout) plugs in behind the same method.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
from PIL import Image, ImageEnhance

from adrag_app.generators import GeneratedImage, Generator, make_generator
from adrag_app.service import ad_service as service
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import Settings, load_settings
from adrag_assets.volume import open_volume

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
MAX_SIDECAR_BYTES = 1_000_000
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

    # -- edits -----------------------------------------------------------------------------

    # What the default implementation can apply; the rest is reported as unsupported.
    edits_supported = ("headline", "tone", "variant")

    def edit_ad(
        self, ad: Mapping[str, Any], edits: Mapping[str, Any], context: ToolContext
    ) -> dict[str, Any]:
        """A new version of ``ad`` (``{"path", "sidecar", ...}`` as this tool returned it)
        with ``edits`` applied on top of the edits it already carries; the parent stays.

        The default: the same brief and photo regenerated by :func:`service.generate_ad` with
        the version's headline, its tone applied to the image, and, for a variant, the next
        photo of the same top-3; the sidecar records ``version``, ``parent``, ``edits`` and
        ``spec``. Placement and product edits need the creative renderer: they are kept in
        ``spec`` and listed in ``unsupported``; an edit with nothing this can apply raises
        :class:`EditUnsupported`.
        """
        edits = check_edits(edits)
        store = open_volume(self.settings.volume_uri)
        sidecar_rel = store.relative(str(ad.get("sidecar") or ""))
        try:
            parent = json.loads(store.read_bytes(sidecar_rel, MAX_SIDECAR_BYTES))
        except (OSError, ValueError) as e:
            raise service.AdServiceError(
                f"the ad's record {store.display(sidecar_rel)} cannot be read "
                f"({type(e).__name__}); make the ad again"
            ) from e
        spec = merge_spec(parent.get("spec") or {}, edits)
        unsupported = sorted(k for k in edits if k not in self.edits_supported)
        if len(unsupported) == len(edits):
            raise EditUnsupported(unsupported)
        seed_index = int(parent.get("seed_index") or 0)
        if "variant" in edits:
            seed_index = (seed_index + int(edits["variant"])) % service.TOP_K
        generator = self.generator or make_generator(self.settings.generator)
        if spec.get("tone"):
            generator = ToneGenerator(generator, tuple(spec["tone"]))
        made = service.generate_ad(
            str(parent["description"]),
            seed_index,
            brand=parent.get("brand_path") or context.brand,
            segment=context.segment,
            user=context.user,
            filters=dict(parent.get("filters") or {}) or None,
            exclude=tuple(context.exclude),
            like=context.like,
            headline=spec.get("headline"),
            settings=self.settings,
            generator=generator,
            instance=self.instance,
            index=self.index,
        )
        version = int(parent.get("version") or 1) + 1
        lineage = {
            "version": version,
            "parent": str(parent.get("path") or ad.get("path") or ""),
            "edits": edits,
            "spec": spec,
        }
        meta = {**made.metadata, **lineage}
        store.write_all_or_nothing(
            [(made.sidecar, json.dumps(meta, indent=2, ensure_ascii=False).encode() + b"\n")]
        )
        return {
            "mode": "edit",
            "ad": {"path": made.path, "sidecar": made.sidecar},
            "seed": {
                "rank": meta.get("seed_index", seed_index),
                "path": meta.get("seed_path", ""),
                "image_id": meta.get("seed_image_id", ""),
            },
            "brand": meta.get("brand_path", ""),
            "generator": meta.get("generator", ""),
            "model": meta.get("model", ""),
            **lineage,
            "unsupported": unsupported,
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


# One step of each tone: (red, green, blue) channel gains, or a brightness factor.
_TONE_GAINS = {"warmer": (1.08, 1.0, 0.9), "cooler": (0.9, 1.0, 1.08)}
_TONE_BRIGHTNESS = {"brighter": 1.12, "darker": 0.88}


def apply_tone(png: bytes, tones: tuple[str, ...]) -> bytes:
    """``png`` with each tone step applied in turn, as PNG (fixed settings: deterministic)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for tone in tones:
        if tone in _TONE_GAINS:
            bands = [
                band.point(lambda v, g=gain: min(255, round(v * g)))
                for band, gain in zip(image.split(), _TONE_GAINS[tone], strict=True)
            ]
            image = Image.merge("RGB", bands)
        else:
            image = ImageEnhance.Brightness(image).enhance(_TONE_BRIGHTNESS[tone])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


class ToneGenerator:
    """A generator whose images get the tone steps of a version ("warmer", "darker"...)."""

    def __init__(self, inner: Generator, tones: tuple[str, ...]) -> None:
        self.inner = inner
        self.tones = tones
        self.name = inner.name
        self.model = inner.model

    def generate(
        self, seed_image: Path, brand_image: Path, prompt: str, *, seed: int | None = None
    ) -> GeneratedImage:
        image = self.inner.generate(seed_image, brand_image, prompt, seed=seed)
        return replace(image, png=apply_tone(image.png, self.tones))
