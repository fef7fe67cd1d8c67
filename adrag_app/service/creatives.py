"""Campaign creatives: one brief -> variants x placements, written, tracked, editable.

``make_creatives(description, placements, variants)`` retrieves the top photos for the
description (variant ``i`` is photo ``i``), writes the copy once per variant (for the
segment, never quoting it), lays out one creative per placement and writes each as
``ads/<date>/<slug>-<set id>/v<variant>-<placement>-r<version>.png`` with a JSON sidecar,
then reports it to Dagster (a materialization of ``ad_creatives`` and the evaluation of its
placement-spec check).

Edits are data: a sidecar holds the parameters that rendered its creative (``render``);
:func:`edit_creative` applies a change to them and renders a new version whose ``parent`` is
the one edited. Nothing is overwritten or deleted, so "undo" is going back to the parent.

With an image model (Replicate) each variant is generated once per aspect ratio the chosen
placements need (the model places the product), then adrag draws the same text layer; the
model's picture is kept beside the creatives (``...-base-<ratio>.png``) so an edit of the text
or colour does not pay for another generation.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg
import yaml
from PIL import Image, ImageOps

from adrag_app.access.roles import Person
from adrag_app.access.spending import Spending
from adrag_app.creative import export
from adrag_app.creative.brandkit import KIT_FILE, BrandKit, load_kit
from adrag_app.creative.copywriter import Copy, cut_at_word, refuse_banned, write_copy
from adrag_app.creative.layout import Look, render
from adrag_app.creative.placements import Placement, choose, load_placements
from adrag_app.creative.product import cut_out
from adrag_app.creative.saliency import subject_box
from adrag_app.creative.spec import spec_problems
from adrag_app.generators import Generator, make_generator
from adrag_app.service.ad_service import (
    TOP_K,
    AdServiceError,
    Candidate,
    _check_description,
    _generation_seed,
    _retrieve_traced,
    _slug,
    list_brand_images,
    resolve_brand,
)
from adrag_assets import tracing
from adrag_assets.ads.writeback import report_creatives
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.redact import redact
from adrag_assets.settings import Settings, load_settings
from adrag_assets.volume import ADS, Volume, open_volume

log = logging.getLogger(__name__)

SIDECAR_SCHEMA = 2
LAYOUT_MODEL = "adrag-layout-v1"
MAX_VARIANTS = TOP_K * 2
# PNG at the fastest zlib level: a 1080x1920 photo ad is ~3 MB either way, and level 6 takes
# ten times as long.
PNG_LEVEL = 1
PREVIEW_PX = 360  # contact sheet rows and Dagster thumbnails
# The set made when no placements are named (a conversation, `adrag generate`): the feed and
# a story, the two a Meta campaign cannot do without.
DEFAULT_PLACEMENTS = ("meta_feed", "story")


# Where a creative came from, printed with it (``adrag generate --json``, the agent's tool).
_PROVENANCE = ("seed_path", "seed_image_id", "brand_path", "generator", "model", "encoder_id")


@dataclass(frozen=True)
class Creative:
    """One written creative; :meth:`as_dict` is what ``adrag generate --json`` prints."""

    path: str
    sidecar: str
    placement: str
    width: int
    height: int
    headline: str
    primary_text: str
    cta: str
    text_boxes: list[dict[str, Any]]
    product_box: list[int] | None
    subject_box: list[int]
    version: int
    parent: str | None
    set_id: str
    variant: int
    metadata: dict[str, Any] = field(repr=False, default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "placement": self.placement,
            "width": self.width,
            "height": self.height,
            "headline": self.headline,
            "primary_text": self.primary_text,
            "cta": self.cta,
            "text_boxes": [
                {"text": b["text"], "box": b["box"], "contrast": b["contrast"]}
                for b in self.text_boxes
            ],
            "product_box": self.product_box,
            "subject_box": self.subject_box,
            "version": self.version,
            "parent": self.parent,
            "sidecar": self.sidecar,
            "set_id": self.set_id,
            "variant": self.variant,
            **{k: self.metadata.get(k) for k in _PROVENANCE},
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Creative:
        return cls(
            path=meta["path"],
            sidecar=meta["sidecar"],
            placement=meta["placement"],
            width=meta["width"],
            height=meta["height"],
            headline=meta["headline"],
            primary_text=meta["primary_text"],
            cta=meta["cta"],
            text_boxes=meta["text_boxes"],
            product_box=meta["product_box"],
            subject_box=meta["subject_box"],
            version=meta["version"],
            parent=meta["parent"],
            set_id=meta["set_id"],
            variant=meta["variant"],
            metadata=meta,
        )


@dataclass(frozen=True)
class Edit:
    """A change asked for in words, as data. ``None`` keeps what the parent had; ``warmth``
    and ``brightness`` are steps added to the parent's (-1..1 in all)."""

    headline: str | None = None
    warmth: float | None = None
    brightness: float | None = None
    product_position: str | None = None
    product_scale: float | None = None  # multiplies the parent's
    placement: str | None = None


@dataclass
class _Source:
    """What every creative of a variant is made from."""

    variant: int
    seed: Candidate
    photo: Image.Image
    subject: tuple[int, int, int, int]
    copy: Copy


@dataclass(frozen=True)
class _Brief:
    """What every creative of one set (or one edit) shares, as its sidecar records it."""

    folder: str
    set_id: str
    version: int
    parent: str | None
    scene: str
    segment: str
    encoder_id: str
    user: str
    person: Person | None
    headline_override: str | None
    filters: dict[str, str]


@dataclass
class _Context:
    settings: Settings
    store: Volume
    kit: BrandKit
    product_rel: str
    product: Image.Image  # the cut-out
    product_file: Path
    generator: Generator
    local: bool
    placements: dict[str, Placement]


def _load_image(store: Volume, rel: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(store.read_bytes(rel, max_bytes=60_000_000))) as im:
            im.load()
            # Phone photos store their rotation in EXIF.
            return ImageOps.exif_transpose(im).copy()
    except FileNotFoundError:
        raise AdServiceError(f"{store.display(rel)} is gone from the volume") from None
    except OSError as e:
        raise AdServiceError(f"{store.display(rel)} is not a readable image ({e})") from None


def _kit_logo(store: Volume) -> str | None:
    try:
        data = yaml.safe_load(store.read_bytes(KIT_FILE)) or {}
    except (FileNotFoundError, yaml.YAMLError):
        return None
    logo = data.get("logo") if isinstance(data, dict) else None
    return store.relative(logo) if isinstance(logo, str) else None


def _product(settings: Settings, store: Volume, brand: str | Path | None) -> str:
    if brand is not None and str(brand).strip():
        return resolve_brand(settings, brand)
    logo = _kit_logo(store)
    products = [p for p in list_brand_images(settings) if p != logo]
    if not products:
        return resolve_brand(settings, None)  # its error names the folder
    return products[0]


def _context(settings: Settings, brand: str | Path | None, generator: Generator | None) -> _Context:
    store = open_volume(settings.volume_uri)
    product_rel = _product(settings, store, brand)
    product_image = _load_image(store, product_rel)
    kit = load_kit(store, product_image, product_rel)
    generator = generator or make_generator(settings.generator)
    return _Context(
        settings=settings,
        store=store,
        kit=kit,
        product_rel=product_rel,
        product=cut_out(product_image),
        product_file=store.local_path(product_rel),
        generator=generator,
        local=getattr(generator, "name", "") == "local",
        placements=load_placements(store),
    )


def _chat(settings: Settings) -> Any:
    if not settings.llm.configured:
        return None
    from adrag_app.llm import ChatClient

    llm = settings.llm
    return ChatClient(llm.base_url, llm.model, llm.api_key, timeout=llm.timeout_s)


def _prompt(scene: str) -> str:
    # No headline: on-image text is adrag's to draw, never the model's.
    return "\n".join(
        [
            "Place the product from image 2 naturally into the scene of image 1, keeping the "
            "animal and the setting of image 1 as they are and the product exactly as in image "
            "2 (shape, colours, label).",
            "Match the scene's lighting, perspective and shadows so it reads as one photograph.",
            f"Scene: {scene}.",
            "Style: clean, bright, photorealistic advertising photo. No text, no letters, no "
            "logos other than the product's own label; leave calm space for a headline.",
        ]
    )


def _ratio_slug(ratio: str) -> str:
    return ratio.replace(":", "x")


def _render_one(
    ctx: _Context,
    source: _Source,
    placement: Placement,
    look: Look,
    headline: str,
    base: tuple[Image.Image, dict[str, Any]] | None,
) -> tuple[Any, dict[str, Any]]:
    """Lay out one creative: the local composite, or the text layer over a model's picture."""
    limit = placement.limits.headline
    words = headline if len(headline) <= limit else cut_at_word(headline, limit)
    if base is None:
        rendered = render(
            source.photo,
            ctx.product,
            ctx.kit,
            words,
            source.copy.cta,
            placement,
            look,
            subject=source.subject,
        )
        gen = {"generator": "local", "model": LAYOUT_MODEL, "provider_id": None}
    else:
        picture, gen = base
        rendered = render(
            picture, None, ctx.kit, words, source.copy.cta, placement, look, full_frame=True
        )
    return rendered, {**gen, "headline": words, "headline_cut": words != headline}


def _generate_base(
    ctx: _Context, source: _Source, ratio: str, scene: str
) -> tuple[bytes, dict[str, Any]]:
    prompt = _prompt(scene)
    seed = _generation_seed(source.seed.image_id, ctx.kit.digest, f"{prompt}\n{ratio}")
    with tracing.span(
        "generate_image",
        tracing.TOOL,
        inputs={"prompt": prompt, "seed_path": source.seed.path, "aspect_ratio": ratio},
        attributes={"generator": ctx.generator.name, "model": ctx.generator.model},
    ):
        image = ctx.generator.generate(
            ctx.store.local_path(source.seed.path),
            ctx.product_file,
            prompt,
            seed=seed,
            aspect_ratio=ratio,
        )
    return image.png, {
        "generator": image.generator,
        "model": image.model,
        "provider_id": image.provider_id,
        "generation_seed": seed,
        "prompt": prompt,
    }


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def _write(
    ctx: _Context,
    items: list[tuple[dict[str, Any], bytes, Image.Image]],
    extra: Sequence[tuple[str, bytes]],
    instance: dg.DagsterInstance | None,
) -> None:
    """All files (sidecars first), then Dagster; if Dagster cannot be told, nothing is kept."""
    files = list(extra)
    for meta, png, _ in items:
        sidecar = json.dumps(meta, indent=2, ensure_ascii=False).encode() + b"\n"
        files += [(meta["sidecar"], sidecar), (meta["path"], png)]
    ctx.store.write_all_or_nothing(files)
    try:
        report_creatives(
            ctx.settings.dagster_home,
            instance,
            [(meta, _png(p), ctx.store.display(meta["path"])) for meta, _, p in items],
        )
    except Exception as e:
        ctx.store.delete([path for path, _ in files])
        raise AdServiceError(
            f"the creatives were made but could not be recorded in Dagster "
            f"({type(e).__name__}: {e}); nothing was kept"
        ) from e


def _metadata(
    ctx: _Context,
    source: _Source,
    placement: Placement,
    look: Look,
    rendered: Any,
    gen: dict[str, Any],
    png: bytes,
    brief: _Brief,
    base_path: str | None,
) -> dict[str, Any]:
    name = f"v{source.variant + 1}-{placement.name}-r{brief.version}"
    path = f"{brief.folder}/{name}.png"
    meta: dict[str, Any] = {
        "schema_version": SIDECAR_SCHEMA,
        "kind": "creative",
        "path": path,
        "sidecar": f"{brief.folder}/{name}.json",
        "set_id": brief.set_id,
        "variant": source.variant,
        "version": brief.version,
        "parent": brief.parent,
        "placement": placement.name,
        "placement_label": placement.label,
        "platform": placement.platform,
        "width": placement.width,
        "height": placement.height,
        "size": f"{placement.width}x{placement.height}",
        "headline": gen["headline"],
        "primary_text": source.copy.primary_text,
        "cta": source.copy.cta,
        "copy_source": source.copy.source,
        "text_boxes": [b.as_dict() for b in rendered.text_boxes],
        "contrast": {b.role: round(b.contrast, 2) for b in rendered.text_boxes},
        "product_box": list(rendered.product_box) if rendered.product_box else None,
        "subject_box": list(rendered.subject_box),
        "logo_box": list(rendered.logo_box) if rendered.logo_box else None,
        "safe_zone": list(placement.safe_box()),
        "safe_zone_ok": rendered.safe_ok,
        "segment": brief.segment,
        "description": brief.scene,
        "filters": brief.filters,
        "seed_image_id": source.seed.image_id,
        "seed_path": source.seed.path,
        "seed_score": source.seed.score,
        "seed_labels": source.seed.labels,
        "brand_path": ctx.product_rel,
        "brand_kit_source": ctx.kit.source,
        "brand_kit_digest": ctx.kit.digest,
        "generator": gen["generator"],
        "model": gen["model"],
        "provider_id": gen.get("provider_id"),
        "base_path": base_path,
        "encoder_id": brief.encoder_id,
        "user": brief.user,
        # Who signed in (never a token or cookie): the provider's subject and the email.
        "user_subject": brief.person.subject if brief.person else None,
        "user_email": brief.person.email if brief.person else None,
        "created_at": datetime.now(UTC).isoformat(),
        "sha256": hashlib.sha256(png).hexdigest(),
        "notes": (
            [f"headline shortened to {placement.limits.headline} characters for {placement.label}"]
            if gen["headline_cut"]
            else []
        ),
        # Exactly what rendered this version: an edit starts from here.
        "render": {
            "look": look.as_dict(),
            "headline_override": brief.headline_override,
            "copy": source.copy.as_dict(),
        },
    }
    with Image.open(io.BytesIO(png)) as im:
        meta["spec_problems"] = spec_problems(meta, im, placement)
    return redact(meta)


def _produce(
    ctx: _Context,
    sources: list[_Source],
    chosen: list[Placement],
    look: Look,
    brief: _Brief,
    bases: dict[tuple[int, str], tuple[str, bytes, dict[str, Any]]],
) -> tuple[list[tuple[dict[str, Any], bytes, Image.Image]], list[tuple[str, bytes]]]:
    """Render every (variant, placement); returns (metadata, png) pairs and new base files.
    Model calls are paid: they are reserved against the daily limits first (refused over
    them, before anything is spent); the local compositor is free and not counted."""
    new_bases: list[tuple[str, bytes]] = []
    if not ctx.local:
        missing = [
            (source, ratio)
            for source in sources
            for ratio in dict.fromkeys(p.aspect_ratio for p in chosen)
            if (source.variant, ratio) not in bases
        ]
        spending = Spending.from_settings(ctx.settings)
        who = brief.person.subject if brief.person else brief.user
        reservation = spending.reserve(who, len(missing))
        try:
            for source, ratio in missing:
                png, gen = _generate_base(ctx, source, ratio, brief.scene)
                rel = f"{brief.folder}/v{source.variant + 1}-base-{_ratio_slug(ratio)}.png"
                bases[(source.variant, ratio)] = (rel, png, gen)
                new_bases.append((rel, png))
        except BaseException:
            if not new_bases:  # nothing was generated: nothing to count
                spending.give_back(reservation)
            raise

    def one(job: tuple[_Source, Placement]) -> tuple[dict[str, Any], bytes, Image.Image]:
        source, placement = job
        base = None
        base_path = None
        if not ctx.local:
            base_path, png, gen = bases[(source.variant, placement.aspect_ratio)]
            with Image.open(io.BytesIO(png)) as im:
                base = (im.convert("RGB"), gen)
        headline = brief.headline_override or source.copy.headline
        rendered, gen = _render_one(ctx, source, placement, look, headline, base)
        png = _png(rendered.image)
        preview = rendered.image.copy()
        preview.thumbnail((PREVIEW_PX, PREVIEW_PX))
        meta = _metadata(ctx, source, placement, look, rendered, gen, png, brief, base_path)
        return meta, png, preview

    jobs = [(s, p) for s in sources for p in chosen]
    # Pillow and numpy let go of the GIL while they work: two threads use both cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, jobs)), new_bases


def make_creatives(
    description: str,
    placements: str | Sequence[str] = DEFAULT_PLACEMENTS,
    variants: int = 3,
    *,
    seed_index: int = 0,
    headline: str | None = None,
    segment: str = "",
    look: Look | None = None,
    brand: str | Path | None = None,
    user: str = "",
    person: Person | None = None,
    filters: dict[str, str] | None = None,
    exclude: Sequence[str] = (),
    like: str = "",
    settings: Settings | None = None,
    generator: Generator | None = None,
    instance: dg.DagsterInstance | None = None,
    index: MilvusIndex | None = None,
    contact_sheet: bool = True,
    parent: Creative | None = None,
) -> list[Creative]:
    """Creatives for ``description``: ``variants`` photos x ``placements`` (names, a comma
    list, or ``"all"``), ordered by variant then placement. The photos are the ranking's from
    ``seed_index`` on (0 = the best match; one of the top-3 the marketer was shown, searched
    with the same ``filters``, ``exclude`` and ``like``).

    ``headline``: the marketer's own (wins over written copy; refused if it uses a banned
    word). ``segment``: who the ad is for; the copy is written for them, never quoting them.
    Everything is written and reported, or nothing is (a failed generation leaves no file).
    ``parent``: the creative these replace ("another variant" in a conversation): they are
    its next version and name it as their parent. ``person``: who signed in (recorded with
    ``user``, and counted against the daily limits of paid generations).
    """
    settings = settings or load_settings()
    description, segment, user = redact(description), redact(segment), redact(user)
    headline = " ".join(redact(headline).split()) if headline else None
    filters = redact(dict(filters)) if filters else filters
    look = look or Look()
    if not isinstance(variants, int) or not 1 <= variants <= MAX_VARIANTS:
        raise ValueError(f"variants must be between 1 and {MAX_VARIANTS}, got {variants!r}")
    if isinstance(seed_index, bool) or seed_index not in range(TOP_K):
        raise ValueError(
            f"seed_index must be 0, 1 or 2 (one of the top {TOP_K}), got {seed_index!r}"
        )
    with tracing.span(
        "make_creatives",
        tracing.CHAIN,
        inputs={
            "description": description,
            "placements": placements if isinstance(placements, str) else list(placements),
            "variants": variants,
            "seed_index": seed_index,
            "segment": segment,
        },
        attributes=_who(user, person),
    ) as root:
        scene = _check_description(description)
        ctx = _context(settings, brand, generator)
        chosen = choose(ctx.placements, placements)
        if headline:
            refuse_banned(ctx.kit, headline=headline)
        candidates, encoder_id = _retrieve_traced(
            scene, max(seed_index + variants, TOP_K), filters, settings, index, exclude, like
        )
        if len(candidates) <= seed_index:
            raise AdServiceError(
                (f"only {len(candidates)} photo(s) match" if candidates else "no photo matches")
                + f" {scene!r}"
                + (f" with filters {dict(filters)}" if filters else "")
                + (f"; there is no photo {seed_index + 1}" if candidates else "")
            )
        chat = _chat(settings)
        limit = min(p.limits.headline for p in chosen)
        sources = []
        for i, seed in enumerate(candidates[seed_index : seed_index + variants]):
            photo = _load_image(ctx.store, ctx.store.relative(seed.path)).convert("RGB")
            copy = write_copy(
                ctx.kit,
                seed.labels,
                segment=segment,
                headline=headline,
                limit=limit,
                variant=i,
                chat=chat,
            )
            sources.append(_Source(i, seed, photo, subject_box(photo), copy))

        created = datetime.now(UTC)
        set_id = secrets.token_hex(4)
        folder = ctx.store.relative(f"{ADS}/{created:%Y-%m-%d}/{_slug(scene)}-{set_id}")
        started = time.perf_counter()
        brief = _Brief(
            folder=folder,
            set_id=set_id,
            version=parent.version + 1 if parent else 1,
            parent=parent.path if parent else None,
            scene=scene,
            segment=segment,
            encoder_id=encoder_id,
            user=user,
            person=person,
            headline_override=headline,
            filters=dict(filters or {}),
        )
        items, bases = _produce(ctx, sources, chosen, look, brief, bases={})
        extra = list(bases)
        if contact_sheet:
            sheet = f"{folder}/contact-sheet.png"
            extra.append((sheet, _sheet(items, len(chosen))))
            for meta, _, _ in items:
                meta["contact_sheet"] = sheet
        _write(ctx, items, extra, instance)
        root.set_outputs({"set_id": set_id, "creatives": [m["path"] for m, _, _ in items]})
        root.set_attributes({"duration_s": round(time.perf_counter() - started, 3)})
    log.info("%d creatives in %s (%s)", len(items), folder, ctx.generator.name)
    return [Creative.from_metadata(meta) for meta, _, _ in items]


def _who(user: str, person: Person | None) -> dict[str, str]:
    """Who asked, as a trace records it (never a token or cookie)."""
    who = {"user": user}
    if person is not None:
        who.update(user_subject=person.subject, user_email=person.email)
    return who


def _items(
    triples: Sequence[tuple[dict[str, Any], bytes, Image.Image | None]],
) -> list[export.Item]:
    return [
        export.Item(
            PurePosixPath(m["path"]).name,
            png,
            m["placement"],
            m["width"],
            m["height"],
            m["headline"],
            m["primary_text"],
            m["cta"],
            preview,
        )
        for m, png, preview in triples
    ]


def _sheet(items: Sequence[tuple[dict[str, Any], bytes, Image.Image]], columns: int) -> bytes:
    return export.contact_sheet(_items(items), columns)


def load_creative(path: str, settings: Settings | None = None) -> Creative:
    """The creative at ``path`` (its PNG or sidecar, relative to the volume)."""
    settings = settings or load_settings()
    store = open_volume(settings.volume_uri)
    rel = store.relative(path)
    sidecar = rel.removesuffix(".png").removesuffix(".json") + ".json"
    try:
        meta = json.loads(store.read_bytes(sidecar, max_bytes=5_000_000))
    except FileNotFoundError:
        raise AdServiceError(f"no creative at {store.display(rel)} (no sidecar)") from None
    except ValueError as e:
        raise AdServiceError(f"{store.display(sidecar)} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "creative":
        raise AdServiceError(f"{store.display(sidecar)} is not the sidecar of a creative")
    return Creative.from_metadata(meta)


def list_versions(creative: Creative, settings: Settings | None = None) -> list[Creative]:
    """``creative`` and its ancestors, newest first (the undo history)."""
    chain = [creative]
    while chain[-1].parent:
        chain.append(load_creative(chain[-1].parent, settings))
    return chain


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, value))


def edited_look(look: Look, edit: Edit) -> Look:
    """``look`` with ``edit``'s tone steps and product changes applied, within their ranges."""
    return replace(
        look,
        warmth=_clamp(look.warmth + (edit.warmth or 0.0), -1, 1),
        brightness=_clamp(look.brightness + (edit.brightness or 0.0), -1, 1),
        product_position=edit.product_position or look.product_position,
        product_scale=_clamp(look.product_scale * (edit.product_scale or 1.0), 0.5, 1.6),
    )


def edit_creative(
    path: str,
    edit: Edit,
    *,
    user: str = "",
    person: Person | None = None,
    settings: Settings | None = None,
    generator: Generator | None = None,
    instance: dg.DagsterInstance | None = None,
) -> Creative:
    """A new version of the creative at ``path`` with ``edit`` applied; its parent is
    ``path``. The photo, product, copy and kit are the parent's; only what the edit names
    changes. A headline with a banned word is refused."""
    settings = settings or load_settings()
    parent = load_creative(path, settings)
    meta = parent.metadata
    ctx = _context(settings, meta["brand_path"], generator)
    if ctx.kit.digest != meta["brand_kit_digest"]:
        log.info("brand kit changed since %s; the edit uses the current kit", parent.path)
    look = edited_look(Look(**meta["render"]["look"]), edit)
    headline_override = meta["render"]["headline_override"]
    if edit.headline is not None and edit.headline.strip():
        headline_override = " ".join(redact(edit.headline).split())
        refuse_banned(ctx.kit, headline=headline_override)
    placement = ctx.placements.get(edit.placement or parent.placement)
    if placement is None:
        choose(ctx.placements, [edit.placement or parent.placement])  # raises, naming them
    copy = Copy(**meta["render"]["copy"])
    seed = Candidate(
        -1, meta["seed_image_id"], meta["seed_path"], meta["seed_score"], meta["seed_labels"]
    )
    photo = _load_image(ctx.store, seed.path).convert("RGB")
    source = _Source(parent.variant, seed, photo, subject_box(photo), copy)
    folder = str(PurePosixPath(parent.path).parent)
    # The next free version number in the set: versions never collide, nothing is replaced.
    siblings = {f.path for f in ctx.store.walk(folder)}
    version = parent.version + 1
    while f"{folder}/v{parent.variant + 1}-{placement.name}-r{version}.png" in siblings:
        version += 1
    bases: dict[tuple[int, str], tuple[str, bytes, dict[str, Any]]] = {}
    if not ctx.local:
        base_rel = f"{folder}/v{parent.variant + 1}-base-{_ratio_slug(placement.aspect_ratio)}.png"
        if base_rel in siblings:
            gen = {k: meta.get(k) for k in ("generator", "model", "provider_id")}
            bases[(parent.variant, placement.aspect_ratio)] = (
                base_rel,
                ctx.store.read_bytes(base_rel),
                gen,
            )
    brief = _Brief(
        folder=folder,
        set_id=parent.set_id,
        version=version,
        parent=parent.path,
        scene=meta["description"],
        segment=meta["segment"],
        encoder_id=meta["encoder_id"],
        user=redact(user),
        person=person,
        headline_override=headline_override,
        filters=dict(meta.get("filters") or {}),
    )
    items, new_bases = _produce(ctx, [source], [placement], look, brief, bases)
    _write(ctx, items, new_bases, instance)
    return Creative.from_metadata(items[0][0])


def export_zip(creatives: Sequence[Creative | str], settings: Settings | None = None) -> bytes:
    """A zip of the creatives (objects or paths) with ``manifest.csv``: file, placement, size,
    headline, primary text, call to action."""
    settings = settings or load_settings()
    store = open_volume(settings.volume_uri)
    triples: list[tuple[dict[str, Any], bytes, Image.Image | None]] = []
    for c in creatives:
        creative = c if isinstance(c, Creative) else load_creative(c, settings)
        triples.append((creative.metadata, store.read_bytes(creative.path), None))
    names = [PurePosixPath(m["path"]).name for m, _, _ in triples]
    if len(set(names)) != len(names):
        # Creatives of several sets: keep the set in the name so none overwrites another.
        triples = [
            ({**m, "path": f"{m['set_id']}-{PurePosixPath(m['path']).name}"}, png, None)
            for m, png, _ in triples
        ]
    return export.zip_bytes(_items(triples))
