"""The Streamlit app's logic that needs no Streamlit: safe file access, uploads, health.

Everything the app shows or serves from disk goes through :func:`read_volume_image`, which
refuses any path that escapes the volume (``..``, absolute paths elsewhere, symlinks out),
whatever the agent, a widget or a URL parameter says.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from adrag_app.agent import intents
from adrag_app.agent.agent import GREETING, SHOWING, AgentState
from adrag_app.agent.chat_input import REFUSED, MessageRefused, check_message, shortened
from adrag_assets.embeddings.progress import DONE, read_progress
from adrag_assets.embeddings.spec import RANDOM_WARNING, EncoderSpec
from adrag_assets.settings import Settings
from adrag_assets.volume import ADS, BRAND_UPLOADS, Volume, is_file, open_volume

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


GALLERY_LIMIT = 60  # the newest creatives the gallery reads; older ones stay in the volume
MAX_SIDECAR_BYTES = 1_000_000


def past_creatives(volume: Volume | str | Path, limit: int = GALLERY_LIMIT) -> list[dict[str, Any]]:
    """The newest creatives in the volume's ``ads/``, newest first, each its sidecar (a
    sidecar that cannot be read is skipped: the gallery shows what it can)."""
    store = open_volume(volume) if isinstance(volume, str | Path) else volume
    sidecars = sorted(
        (f for f in store.walk(ADS) if f.problem is None and f.path.endswith(".json")),
        key=lambda f: f.mtime_ns,
        reverse=True,
    )
    found = []
    for stat in sidecars:
        try:
            meta = json.loads(store.read_bytes(stat.path, MAX_SIDECAR_BYTES))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("kind") == "creative" and meta.get("path"):
            found.append(meta)
            if len(found) >= limit:
                break
    return found


def gallery_sets(
    creatives: list[dict[str, Any]], segment: str = "", order: list[str] | None = None
) -> list[list[dict[str, Any]]]:
    """``creatives`` grouped by (set, variant, version) in their order, kept to ``segment``
    when one is given: one row of the gallery is one version of one ad in all its sizes, in
    the placements' ``order``."""
    rows: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for meta in creatives:
        if segment and meta.get("segment") != segment:
            continue
        key = (
            str(meta.get("set_id")),
            int(meta.get("variant") or 0),
            int(meta.get("version") or 1),
        )
        rows.setdefault(key, []).append(meta)
    rank = {name: i for i, name in enumerate(order or ())}
    return [
        sorted(row, key=lambda m: rank.get(m.get("placement"), len(rank))) for row in rows.values()
    ]


def preview(data: bytes, px: int) -> bytes:
    """``data`` (an image) at most ``px`` on its longer side, as PNG: what a page shows; the
    full size is only downloaded."""
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((px, px))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="PNG")
    return out.getvalue()


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


def embedding_news(settings: Settings) -> str | None:
    """The embedding job's progress while one runs ("re-embedding 4,200 / 20,000, about
    6 min left"), or how it stopped; None when the last one finished (or none ran here)."""
    report = read_progress(settings.home)
    return None if report is None or report.state == DONE else report.line()


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


# -- the conversation of one browser session ---------------------------------------------------

# One agent turn: (message, state) -> (new state, reply as the transcript keeps it).
Turn = Callable[[str, dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]
MESSAGE = "message"
RESTART = "restart"  # "Start over": queued like a message, so nothing sent before it is lost


@dataclass(frozen=True)
class Pending:
    """Something the marketer sent that has not had its turn yet."""

    id: str
    text: str
    kind: str = MESSAGE
    refusal: str = ""  # the sentence said back instead of a turn (a message that is not read)


@dataclass
class Conversation:
    """The chat of one browser session: the agent's state, the transcript, and what was sent
    but has not had its turn yet, in order.

    Streamlit reruns the page for every input, and a message sent while a turn runs *stops*
    that run: by default (``runner.fastReruns``) a new run starts at once, while the stopped
    one's thread goes on until its next Streamlit call, where it ends — and every
    ``st.session_state`` read or write is such a call. So this object is put in the session
    once and then changed only through its own methods, under its own locks, never through
    ``st.session_state``: a message is queued the moment it arrives (:meth:`submit`, from the
    input's callback, before the page runs), a turn runs while holding :meth:`turn` (a new run
    waits for a stopped one still finishing its turn), and a message leaves the queue only
    with its reply (:meth:`record`). A turn that was stopped half-way is simply run again.
    """

    state: dict[str, Any] = field(default_factory=lambda: AgentState().to_dict())
    messages: list[dict[str, Any]] = field(
        default_factory=lambda: [{"role": "assistant", "text": GREETING}]
    )
    pending: list[Pending] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _turn: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def submit(self, text: str, max_chars: int, kind: str = MESSAGE) -> Pending:
        """Queue what was sent; a message that may not be read is queued with its refusal (it
        is answered in its place in the transcript, and nothing reads it)."""
        refusal = ""
        if kind == MESSAGE:
            try:
                text = check_message(text, max_chars)
            except MessageRefused as e:
                text, refusal = shortened(_printable(text)), str(e)
        item = Pending(uuid.uuid4().hex, text, kind, refusal)
        with self._lock:
            self.pending.append(item)
        return item

    def snapshot(self) -> tuple[list[dict[str, Any]], list[Pending], dict[str, Any]]:
        """(transcript, queue, agent state), copied: what a run draws."""
        with self._lock:
            return list(self.messages), list(self.pending), copy.deepcopy(self.state)

    @property
    def phase(self) -> str:
        with self._lock:
            return str(self.state.get("phase", ""))

    @contextmanager
    def turn(self) -> Iterator[tuple[Pending | None, dict[str, Any]]]:
        """The next queued item (None when the queue is empty) and the state to run it on,
        with the turn held: one turn at a time, whichever run asks."""
        with self._turn:
            with self._lock:
                head = self.pending[0] if self.pending else None
                state = copy.deepcopy(self.state)
            yield head, state

    def record(self, item: Pending, reply: dict[str, Any], state: dict[str, Any] | None) -> None:
        """``item``'s turn is done: its message and reply join the transcript (``state`` None:
        the agent's state is unchanged) and it leaves the queue. Call it holding :meth:`turn`."""
        with self._lock:
            if not any(p.id == item.id for p in self.pending):
                return
            self.pending = [p for p in self.pending if p.id != item.id]
            self.messages.append({"role": "user", "text": item.text, "id": item.id})
            self.messages.append({**reply, "role": "assistant", "reply_to": item.id})
            if state is not None:
                self.state = copy.deepcopy(state)

    def restart(self, item: Pending) -> None:
        """Start over (``item`` is the queued restart): a fresh state and transcript; what was
        sent after it stays queued."""
        with self._lock:
            self.pending = [p for p in self.pending if p.id != item.id]
            self.state = AgentState().to_dict()
            self.messages = [{"role": "assistant", "text": GREETING}]

    def reply_to(self, item_id: str) -> dict[str, Any] | None:
        """The reply recorded for a queued item, once its turn is done."""
        with self._lock:
            for message in self.messages:
                if message.get("reply_to") == item_id:
                    return message
        return None

    def work_until(self, item: Pending, run: Turn) -> None:
        """Take the queue's turns in order until ``item`` has had its own (or a start over
        before it dropped it). ``run(message, state)`` is one agent turn: (new state, reply).
        If ``run`` is interrupted (Streamlit stops this run), its item stays first in the
        queue, for the run that stopped this one."""
        while self.reply_to(item.id) is None and not self.was_dropped(item.id):
            with self.turn() as (head, state):
                if head is None:
                    return
                if head.kind == RESTART:
                    self.restart(head)
                elif head.refusal:
                    self.record(head, refusal_reply(head), None)
                else:
                    new_state, reply = run(head.text, state)
                    self.record(head, reply, new_state)

    def was_dropped(self, item_id: str) -> bool:
        """Whether an item neither waits nor has a reply (a start over came before it)."""
        with self._lock:
            waiting = any(p.id == item_id for p in self.pending)
        return not waiting and self.reply_to(item_id) is None


def refusal_reply(item: Pending) -> dict[str, Any]:
    return {"text": item.refusal, "error": REFUSED, "notes": [], "candidate": None, "ad": None}


def _printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes shown as U+FFFD (for the
    transcript only: a refused message is never read)."""
    return "".join(
        "\ufffd"
        if ("\ud800" <= c <= "\udfff") or (c not in "\t\n\r" and ord(c) < 32) or c == "\x7f"
        else c
        for c in text
    )
