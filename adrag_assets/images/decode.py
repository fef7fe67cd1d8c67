"""Decide whether a file under raw/ is a usable photo: hash it and decode it fully."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Formats a CLIP preprocessor can read; anything else is rejected with its format named.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}


@dataclass(frozen=True)
class Decoded:
    image_id: str
    format: str
    width: int
    height: int


class RejectedImage(ValueError):
    """A file under raw/ that is not a usable photo; the message says why."""


def decode(path: str, data: bytes) -> Decoded:
    """Hash and fully decode one photo; raise :class:`RejectedImage` naming the reason."""
    if not data:
        raise RejectedImage(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format or "unknown", im.size
            if fmt not in ACCEPTED_FORMATS:
                raise RejectedImage(f"{path}: unsupported image format {fmt}")
            im.load()  # a full decode: catches truncated and corrupt data, not just the header
    except RejectedImage:
        raise
    except UnidentifiedImageError:
        raise RejectedImage(f"{path}: not an image (unrecognised content)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise RejectedImage(f"{path}: cannot decode image ({e})") from None
    return Decoded(hashlib.sha256(data).hexdigest(), fmt, width, height)
