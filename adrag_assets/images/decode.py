"""Decide whether a file under raw/ is a usable photo: hash it and decode it fully; and turn a
decoded image into the upright RGB picture people see (what the model and thumbnails get)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats a CLIP preprocessor can read; anything else is rejected with its format named.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
# Photos are read whole into memory (and stored in Delta): a larger file is rejected unread.
MAX_PHOTO_BYTES = 100 << 20
WHITE = (255, 255, 255)
# Bump when decoding changes what the model sees: vectors recorded with an older version are
# re-embedded by the automation. 2: EXIF orientation, 16-bit scaling, transparency on white.
DECODE_VERSION = "2"


@dataclass(frozen=True)
class Decoded:
    image_id: str
    format: str
    width: int  # upright, as people see it (EXIF orientation applied)
    height: int


class RejectedImage(ValueError):
    """A file under raw/ that is not a usable photo; the message says why."""


def decode(path: str, data: bytes) -> Decoded:
    """Hash and fully decode one photo; raise :class:`RejectedImage` naming the reason."""
    if not data:
        raise RejectedImage(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "unknown"
            if fmt not in ACCEPTED_FORMATS:
                raise RejectedImage(f"{path}: unsupported image format {fmt}")
            im.verify()  # checksums a decode skips (PNG chunk CRCs)
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # a full decode: catches truncated and corrupt data, not just the header
            # What the model will see: a file it cannot be turned into is rejected here,
            # rather than kept as an image that never gets a vector.
            width, height = upright_rgb(im).size
    except RejectedImage:
        raise
    except UnidentifiedImageError:
        raise RejectedImage(f"{path}: not an image (unrecognised content)") from None
    except Image.DecompressionBombError as e:
        raise RejectedImage(f"{path}: image too large to decode safely ({e})") from None
    except Exception as e:  # Pillow's plugins raise many kinds on malformed data
        raise RejectedImage(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    return Decoded(hashlib.sha256(data).hexdigest(), fmt, width, height)


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
