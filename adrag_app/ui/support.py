"""The Streamlit app's logic that needs no Streamlit: safe file access, uploads, health.

Everything the app shows or serves from disk goes through :func:`read_volume_image`, which
refuses any path that escapes the volume (``..``, absolute paths elsewhere, symlinks out),
whatever the agent, a widget or a URL parameter says.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from adrag_app.agent import intents
from adrag_app.agent.agent import SHOWING
from adrag_assets.embeddings.spec import RANDOM_WARNING, EncoderSpec
from adrag_assets.settings import Settings
from adrag_assets.volume import BRAND_UPLOADS, Volume, is_file, open_volume

UPLOAD_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MAX_UPLOAD_PIXELS = 40_000_000  # a 40 MP product shot is plenty; more is likely a bomb


class RefusedPath(ValueError):
    """A path the app will not show or serve."""


class UploadRejected(ValueError):
    """An uploaded brand image that is not accepted; the message says why, in plain words."""


def read_volume_image(volume: Volume | str | Path, path: str, under: str | None = None) -> bytes:
    """The bytes of an image file inside the volume (optionally inside ``under/``), or
    :class:`RefusedPath` saying why not.

    The reasons name the requested path, never the server's folders: they are shown to
    whoever opened the page, possibly through a crafted link.
    """
    store = open_volume(volume) if isinstance(volume, str | Path) else volume
    shown = str(path)[:200]
    try:
        rel = store.relative(path)
        found = is_file(store, rel)
    except ValueError:
        raise RefusedPath(f"{shown!r} is not a path inside the app's storage volume") from None
    if under is not None and not rel.startswith(under.rstrip("/") + "/"):
        raise RefusedPath(f"{shown!r} is not under {under}/ in the storage volume")
    if not found:
        raise RefusedPath(f"{shown!r} does not exist in the storage volume")
    if Image.registered_extensions().get(PurePosixPath(rel).suffix.lower()) is None:
        raise RefusedPath(f"{shown!r} is not an image file")
    try:
        return store.read_bytes(rel)
    except FileNotFoundError:  # removed since the look above
        raise RefusedPath(f"{shown!r} does not exist in the storage volume") from None


def _safe_stem(name: str) -> str:
    stem = Path(name).stem
    slug = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower()[:40]
    return slug or "brand"


def save_brand_upload(settings: Settings, name: str, data: bytes, max_mb: int) -> str:
    """Validate an uploaded brand image and store it under ``brand/uploads/``; return its
    path relative to the volume. The same bytes uploaded twice give the same file."""
    if not data:
        raise UploadRejected("the file is empty")
    if len(data) > max_mb * 1024 * 1024:
        raise UploadRejected(f"the file is larger than {max_mb} MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            if fmt not in UPLOAD_FORMATS:
                raise UploadRejected(
                    f"{fmt or 'this format'} is not accepted; use PNG, JPEG or WebP"
                )
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise UploadRejected(f"the image is too large ({width}x{height} pixels)")
            image.load()  # a full decode: a truncated or corrupt file is refused here
    except UploadRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise UploadRejected("the file is not a readable image") from None
    # The name is ours: a slug of the upload's name plus its content hash, with the extension
    # of the format actually found (never the one the uploader claimed).
    digest = hashlib.sha256(data).hexdigest()[:12]
    rel = f"{BRAND_UPLOADS}/{_safe_stem(name)}-{digest}.{UPLOAD_FORMATS[fmt]}"
    volume = open_volume(settings.volume_uri)
    if volume.stat(rel) is None:
        volume.write_all_or_nothing([(rel, data)])
    return rel


@dataclass(frozen=True)
class IndexHealth:
    ok: bool
    rows: int = 0
    collection: str = ""
    encoder_id: str = ""
    encoder_random: bool = False
    synced_at: str = ""
    synced_version: str = ""
    problem: str = ""  # plain words when not ok

    @property
    def encoder_warning(self) -> str:
        return RANDOM_WARNING if self.encoder_random else ""


def index_health(settings: Settings) -> IndexHealth:
    """Rows, encoder and last sync of the live collection; plain words when there is none."""
    from adrag_assets.index.milvus import (
        PROP_ENCODER_ID,
        PROP_ENCODER_SPEC,
        PROP_SYNCED_AT,
        PROP_SYNCED_VERSION,
        MilvusIndex,
    )

    index = MilvusIndex(settings.milvus_uri, settings.milvus_token, settings.index_alias)
    try:
        live = index.live_collection()
        if live is None:
            return IndexHealth(
                ok=False,
                problem="No index yet: put photos under raw/ in the volume and run "
                "`adrag ingest` (or materialize the assets in the Dagster UI).",
            )
        props = index.properties(live)
        rows = index.count(live)
    except Exception as e:
        return IndexHealth(ok=False, problem=f"Cannot read the index ({type(e).__name__}: {e}).")
    finally:
        index.close()
    spec = str(props.get(PROP_ENCODER_SPEC, ""))
    try:
        random = EncoderSpec.parse(spec).is_random if spec else False
    except Exception:
        random = "random" in spec
    return IndexHealth(
        ok=True,
        rows=rows,
        collection=live,
        encoder_id=str(props.get(PROP_ENCODER_ID, "")),
        encoder_random=random,
        synced_at=str(props.get(PROP_SYNCED_AT, "")),
        synced_version=str(props.get(PROP_SYNCED_VERSION, "")),
    )


def encoder_is_random(spec: str) -> bool:
    try:
        return EncoderSpec.parse(spec).is_random
    except Exception:
        return spec.startswith("random:")


def describe_time(iso: str, now: datetime | None = None) -> str:
    """``2026-11-28 18:23 UTC (5 min ago)`` from an ISO timestamp; the input if unparsable."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso or "never"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 90:
        ago = "just now"
    elif seconds < 5400:
        ago = f"{round(seconds / 60)} min ago"
    elif seconds < 172800:
        ago = f"{round(seconds / 3600)} h ago"
    else:
        ago = f"{round(seconds / 86400)} days ago"
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({ago})"


def generator_label() -> tuple[str, str]:
    """(what generates ads, a warning or ""), without contacting any provider."""
    from adrag_app.generators import make_generator

    try:
        generator = make_generator()
    except ValueError as e:
        return "not configured", str(e)
    if generator.name == "local":
        return f"Local compositor, offline ({generator.model})", ""
    return f"Replicate ({generator.model})", ""


def pending_text(message: str, phase: str) -> str:
    """What to show while a turn runs."""
    kind = intents.parse(message).kind
    if phase == SHOWING and kind == intents.YES:
        return "Generating the ad…"
    if kind in (intents.YES, intents.NO, intents.DESCRIPTION, intents.TEXT):
        return "Searching the photo library…"
    return "Thinking…"
