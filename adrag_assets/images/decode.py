"""Decide whether a file under raw/ is a usable photo: hash it and decode it once, at reduced
scale; and turn a decoded image into the upright RGB picture people see (what the model and
thumbnails get).

The one decode gives everything ingest needs: the check that the file is whole (a JPEG decoded
at 1/2..1/8 scale still entropy-decodes every coefficient, so a truncated or corrupt file fails
as a full decode does), the upright size, EXIF taken-at and camera, and the **rendition**: the
upright picture with its long side at most ``rendition_px``, which embedding, re-embedding,
near duplicates and evaluation read instead of the original. Pillow's ``draft`` (libjpeg-turbo
DCT scaling) was measured against ``torchvision.io.decode_jpeg`` (full scale only on CPU) and
a full decode: see the README's "Camera originals".
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats a CLIP preprocessor can read; anything else is rejected with its format named.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
# Photos are read whole into memory: a larger file is rejected unread.
MAX_PHOTO_BYTES = 100 << 20
WHITE = (255, 255, 255)
# Bump when decoding changes what the model sees: vectors recorded with an older version are
# re-embedded by the automation. 2: EXIF orientation, 16-bit scaling, transparency on white.
DECODE_VERSION = "2"
RENDITION_QUALITY = 92  # JPEG quality of a rendition: vectors within cosine 0.9999 (README)
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATETIME, _DATETIME_ORIGINAL = 0x010F, 0x0110, 0x0132, 0x9003


@dataclass(frozen=True)
class Decoded:
    image_id: str
    format: str
    width: int  # upright, as people see it (EXIF orientation applied)
    height: int
    rendition: bytes = b""  # what the model reads: see decode()
    taken_at: datetime | None = None  # EXIF DateTimeOriginal (else DateTime), camera's clock
    camera_make: str | None = None
    camera_model: str | None = None
    has_gps: bool = False  # EXIF carries a GPS position (where it was, not kept itself)


class RejectedImage(ValueError):
    """A file under raw/ that is not a usable photo; the message says why."""


def decode(path: str, data: bytes, rendition_px: int = 512) -> Decoded:
    """Hash and decode one photo once, at the smallest scale that still gives a rendition
    with long side ``rendition_px``; raise :class:`RejectedImage` naming the reason.

    The rendition is the file's own bytes when its long side is already within
    ``rendition_px`` (the model then sees exactly what it saw before renditions), else the
    upright picture scaled down and saved as JPEG.
    """
    if not data:
        raise RejectedImage(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "unknown"
            if fmt not in ACCEPTED_FORMATS:
                raise RejectedImage(f"{path}: unsupported image format {fmt}")
            im.verify()  # checksums a decode skips (PNG chunk CRCs)
        with Image.open(io.BytesIO(data)) as im:
            taken_at, make, model, gps = _exif_facts(im)
            full = im.size  # draft changes im.size to the scaled one
            small = max(full) <= rendition_px
            if not small:
                # Scale so both sides stay >= the rendition's: libjpeg picks 1/2..1/8.
                ratio = rendition_px / max(im.size)
                im.draft("RGB", (round(im.width * ratio), round(im.height * ratio)))
            im.load()  # catches truncated and corrupt data, not just the header
            # What the model will see: a file it cannot be turned into is rejected here,
            # rather than kept as an image that never gets a vector.
            picture = upright_rgb(im)
            # EXIF orientation swaps the sides of a photo stored sideways.
            width, height = full if picture.size == im.size else full[::-1]
        if small:
            rendition = data
        else:
            picture.thumbnail((rendition_px, rendition_px), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            picture.save(buf, "JPEG", quality=RENDITION_QUALITY)
            rendition = buf.getvalue()
    except RejectedImage:
        raise
    except UnidentifiedImageError:
        raise RejectedImage(f"{path}: not an image (unrecognised content)") from None
    except Image.DecompressionBombError as e:
        raise RejectedImage(f"{path}: image too large to decode safely ({e})") from None
    except Exception as e:  # Pillow's plugins raise many kinds on malformed data
        raise RejectedImage(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    return Decoded(
        hashlib.sha256(data).hexdigest(),
        fmt,
        width,
        height,
        rendition,
        taken_at,
        make,
        model,
        gps,
    )


def _exif_facts(im: Image.Image) -> tuple[datetime | None, str | None, str | None, bool]:
    """(taken at, camera make, camera model, has a GPS position) from EXIF; None (False) for
    whatever is absent or broken."""
    try:
        exif = im.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # a broken EXIF block is no reason to lose the photo
        return None, None, None, False
    try:
        # A GPS block with no coordinates (some phones write only a version tag) is no place.
        gps = any(tag in exif.get_ifd(_GPS_IFD) for tag in (2, 4))  # latitude, longitude
    except Exception:
        gps = False
    stamp = sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    taken = None
    if isinstance(stamp, str):
        try:
            taken = datetime.strptime(stamp.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            taken = None
    return taken, _text(exif.get(_MAKE)), _text(exif.get(_MODEL)), gps


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ")[:200]
    return value.encode("utf-8", "backslashreplace").decode("utf-8") or None


def upright_rgb(image: Image.Image) -> Image.Image:
    """The picture as people see it, as 8-bit RGB.

    EXIF orientation is applied (a phone photo held upright is stored sideways with a tag);
    16-bit and float pixels are scaled into 0..255 (a plain ``convert`` clips them, making a
    16-bit photo all white); transparent pixels are shown on white, as a viewer shows a
    cut-out, instead of whatever colour happens to hide under them.
    """
    # A broken EXIF block is no reason to lose the photo: it is then kept as stored.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        bits = 16 if mode.startswith("I;16") else None
        return Image.fromarray(_to_8bit(np.asarray(image), bits), "L").convert("RGB")
    if "transparency" in image.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit(pixels: np.ndarray, bits: int | None) -> np.ndarray:
    """Scale integer or float pixels to 0..255: by their bit depth when the mode says it
    (16), else by the range their values use: 0..1 (float), 0..255, 0..65535, or their max."""
    values = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    top = float(values.max()) if values.size else 0.0
    if bits:
        scale = float(2**bits - 1)
    elif pixels.dtype.kind == "f" and top <= 1.0:
        scale = 1.0
    elif top <= 255:
        scale = 255.0
    elif top <= 65535:
        scale = 65535.0
    else:
        scale = top
    return np.clip(np.round(values * (255.0 / scale)), 0, 255).astype(np.uint8)
