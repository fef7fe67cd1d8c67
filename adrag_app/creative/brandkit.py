"""The brand kit: ``brand/kit.yaml`` in the volume, or a default made from the product image.

``kit.yaml``::

    name: Pawsome
    colors: {primary: "#1f3a5f", accent: "#f2a541", text: "#ffffff"}
    logo: brand/logo.png            # inside the volume
    font: brand/fonts/Brand-Bold.ttf  # TTF or OTF inside the volume
    cta: Shop now
    tone: [warm, playful]
    banned: [cheap, guaranteed]

Without one, the colours come from the product image, the font is DejaVu Sans Bold (Debian's
``fonts-dejavu-core``, installed by ``make setup``) and the call to action "Shop now".
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFont, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adrag_app.creative.contrast import contrast_ratio
from adrag_app.yaml_text import parse_yaml
from adrag_assets.volume import BRAND, Volume

KIT_FILE = f"{BRAND}/kit.yaml"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
DEFAULT_FONT = DEJAVU / "DejaVuSans-Bold.ttf"
DEFAULT_CTA = "Shop now"
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
RGB = tuple[int, int, int]


class BrandKitError(ValueError):
    """A kit file that cannot be used; the message lists every problem."""


class Colors(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary: str
    accent: str
    text: str = "#ffffff"

    @field_validator("primary", "accent", "text")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not isinstance(value, str) or not _HEX.match(value.strip()):
            raise ValueError(f"{value!r} is not a colour like '#1f3a5f'")
        return value.strip().lower()


class KitFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=60)
    colors: Colors
    logo: str | None = None
    font: str | None = None
    cta: str = Field(DEFAULT_CTA, min_length=1, max_length=25)
    tone: list[str] = Field(default_factory=lambda: ["friendly"])
    banned: list[str] = Field(default_factory=list)


def hex_rgb(value: str) -> RGB:
    return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def rgb_hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class BrandKit:
    """What the layout and the copy need, resolved: colours as RGB, font and logo as bytes."""

    name: str
    primary: RGB
    accent: RGB
    text: RGB
    cta: str
    tone: tuple[str, ...]
    banned: tuple[str, ...]
    font_bytes: bytes
    logo: Image.Image | None
    source: str  # "brand/kit.yaml" or "default (colours from brand/x.png, DejaVu Sans Bold)"
    digest: str  # sha256 over the kit's file and the files it names (or the defaults)

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(io.BytesIO(self.font_bytes), size=size)

    def banned_in(self, text: str) -> list[str]:
        """The banned words or phrases that ``text`` contains (whole words, any case)."""
        return [w for w in self.banned if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text, re.I)]

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "name": self.name,
            "colors": {k: rgb_hex(getattr(self, k)) for k in ("primary", "accent", "text")},
            "cta": self.cta,
            "tone": list(self.tone),
            "digest": self.digest,
        }


def product_colors(product: Image.Image) -> tuple[RGB, RGB]:
    """(primary, accent) from the product's own opaque pixels: its two main colours, the
    darker one as primary (panels), the more saturated as accent (the button)."""
    rgba = product.convert("RGBA")
    rgba.thumbnail((96, 96))
    pixels = [p[:3] for p in rgba.getdata() if p[3] > 200]
    if not pixels:
        return (31, 58, 95), (242, 165, 65)
    small = Image.new("RGB", (len(pixels), 1))
    small.putdata(pixels)
    palette = small.quantize(colors=4, method=Image.Quantize.MEDIANCUT)
    counts = sorted(palette.getcolors() or [], reverse=True)
    flat = palette.getpalette() or []
    colours = [tuple(flat[i * 3 : i * 3 + 3]) for _, i in counts]

    def lum(c: RGB) -> float:
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    def sat(c: RGB) -> int:
        return max(c) - min(c)

    # Not the near-white of a label or a background left in the cut-out.
    usable = [c for c in colours if lum(c) < 235] or colours
    accent = max(usable, key=sat)
    primary = min(usable, key=lum)
    # Panels want a deep shade of the product's colour (white text reads on it at a glance);
    # the button must stand out from the panel.
    while contrast_ratio(primary, (255, 255, 255)) < 10:
        primary = tuple(round(v * 0.85) for v in primary)  # type: ignore[assignment]
    while contrast_ratio(accent, primary) < 2.5:
        accent = tuple(round(v + (255 - v) * 0.3) for v in accent)  # type: ignore[assignment]
    return primary, accent  # type: ignore[return-value]


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _read(volume: Volume, rel: str, what: str, problems: list[str]) -> bytes | None:
    try:
        rel = volume.relative(rel)
        return volume.read_bytes(rel, max_bytes=20_000_000)
    except (FileNotFoundError, ValueError, OSError) as e:
        problems.append(f"{volume.display(KIT_FILE)}: {what}: cannot read {rel!r} ({e})")
        return None


def load_kit(
    volume: Volume, product: Image.Image | None = None, product_path: str = ""
) -> BrandKit:
    """The volume's kit, validated, or the default one made from ``product``."""
    try:
        text = volume.read_bytes(KIT_FILE).decode("utf-8")
    except FileNotFoundError:
        return default_kit(product, product_path)
    where = volume.display(KIT_FILE)
    data = parse_yaml(text, where, BrandKitError) or {}
    if not isinstance(data, dict):
        raise BrandKitError(f"{where}: expected a mapping (name, colors, logo, font, ...)")
    try:
        kit = KitFile.model_validate(data)
    except ValidationError as e:
        raise BrandKitError(
            "\n".join(
                f"{where}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in e.errors()
            )
        ) from None
    problems: list[str] = []
    font_bytes, logo = DEFAULT_FONT.read_bytes(), None
    parts = [text.encode()]
    if kit.font:
        data_font = _read(volume, kit.font, "font", problems)
        if data_font is not None:
            try:
                ImageFont.truetype(io.BytesIO(data_font), size=12)
                font_bytes = data_font
                parts.append(data_font)
            except OSError:
                problems.append(f"{where}: font: {kit.font!r} is not a TrueType/OpenType font")
    if kit.logo:
        data_logo = _read(volume, kit.logo, "logo", problems)
        if data_logo is not None:
            try:
                logo = Image.open(io.BytesIO(data_logo))
                logo.load()
                parts.append(data_logo)
            except (UnidentifiedImageError, OSError):
                problems.append(f"{where}: logo: {kit.logo!r} is not a readable image")
    if problems:
        raise BrandKitError("\n".join(problems))
    return BrandKit(
        name=kit.name.strip(),
        primary=hex_rgb(kit.colors.primary),
        accent=hex_rgb(kit.colors.accent),
        text=hex_rgb(kit.colors.text),
        cta=" ".join(kit.cta.split()),
        tone=tuple(t.strip().lower() for t in kit.tone if t.strip()) or ("friendly",),
        banned=tuple(w.strip() for w in kit.banned if w.strip()),
        font_bytes=font_bytes,
        logo=logo,
        source=KIT_FILE,
        digest=_digest(parts),
    )


def default_kit(product: Image.Image | None, product_path: str = "") -> BrandKit:
    if not DEFAULT_FONT.is_file():
        raise BrandKitError(
            f"no brand kit ({KIT_FILE}) and no default font {DEFAULT_FONT}: install Debian's "
            "fonts-dejavu-core (make setup does) or add a kit with a font"
        )
    primary, accent = (
        product_colors(product) if product is not None else ((31, 58, 95), (242, 165, 65))
    )
    facts = {"primary": primary, "accent": accent, "cta": DEFAULT_CTA, "font": DEFAULT_FONT.name}
    return BrandKit(
        name="",
        primary=primary,
        accent=accent,
        text=(255, 255, 255),
        cta=DEFAULT_CTA,
        tone=("friendly",),
        banned=(),
        font_bytes=DEFAULT_FONT.read_bytes(),
        logo=None,
        source=f"default (colours from {product_path or 'defaults'}, DejaVu Sans Bold)",
        digest=_digest([json.dumps(facts, sort_keys=True).encode()]),
    )


def kit_in_use(volume: Volume) -> str:
    """Which kit creatives use, in a few words, without reading any image (``adrag
    status``): ``brand/kit.yaml (Pawsome)``, the default, or what is wrong with the file."""
    try:
        volume.read_bytes(KIT_FILE, max_bytes=1_000_000)
    except FileNotFoundError:
        images = sorted(
            f.path
            for f in volume.walk(BRAND)
            if f.problem is None
            and Path(f.path).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
        )
        where = images[0] if images else "no product image yet"
        return f"default (colours from {where}, DejaVu Sans Bold)"
    try:
        kit = load_kit(volume)
    except BrandKitError as e:
        return f"{KIT_FILE} is not usable: {str(e).splitlines()[0]}"
    return f"{kit.source} ({kit.name})" if kit.name else kit.source
