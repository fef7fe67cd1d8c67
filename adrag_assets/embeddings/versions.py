"""Which code made a vector: the decode and model code versions, recorded per row of
``image_embeddings`` (``embed_version``; the encoder is the row's ``encoder_id``), so rows of
an older version can be found and re-embedded. Milvus holds no copy: the index is derived
from the table, and a re-embedded row reaches it through the table's change feed.
"""

from __future__ import annotations

import contextlib
import io

from PIL import Image

from adrag_assets.embeddings.spec import ENCODER_CODE_VERSION
from adrag_assets.images.decode import DECODE_VERSION

EMBED_VERSION = f"decode-{DECODE_VERSION}.model-{ENCODER_CODE_VERSION}"
# A row whose photo the current code could not decode for the model: it keeps its old vector
# and is not tried again until the version changes (counted apart from the stale rows).
FAILED_PREFIX = "failed@"
FAILED_VERSION = FAILED_PREFIX + EMBED_VERSION
ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


def changed_by_decode_2(data: bytes) -> bool:
    """Whether decode version 2 (the EXIF/16-bit/transparency fix) makes the model see this
    photo differently from version 1, read from its header only (no pixel decode).

    Rows written before versions were recorded carry none; version 1 decoded with a plain
    ``convert("RGB")``, which gives the same pixels as ``upright_rgb`` unless one of these
    holds. So such a row needs a new vector only when this is True; an unreadable header
    says True (re-embedding is the safe side).
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, info = im.mode, im.info
            orientation = 1
            with contextlib.suppress(Exception):  # upright_rgb ignores a broken EXIF block too
                orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return True
    return (
        orientation not in (None, 1)
        or mode.startswith("I")
        or mode == "F"
        or "transparency" in info
        or mode in ALPHA_MODES
    )
