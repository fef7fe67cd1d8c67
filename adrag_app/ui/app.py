"""adrag's chat page for marketers: `adrag up`, or `streamlit run adrag_app/app.py`.

The conversation policy lives in :mod:`adrag_app.agent.agent`; this page only keeps the
conversation (the agent's state, the transcript, the messages waiting for their turn: see
:class:`app_support.Conversation`) in the session, renders messages, photos and the finished
ad, and shows the setup in the sidebar (segment, brand image, generator, encoder, index
health). Everything sent (typed, a button, the segment field) is queued by its widget's
callback, before the page runs, and answered in order.

Configuration is :func:`adrag_assets.settings.load_settings` (the app's own section is
``settings.app``): ``ADRAG_*`` variables from the environment, or Streamlit secrets with the
same names; the environment wins.

With ``[auth]`` in ``.streamlit/secrets.toml`` (Streamlit's own OpenID Connect sign-in), a
visitor who is not signed in sees only the sign-in page, and a signed-in one acts with the
role :mod:`adrag_app.access.roles` gives them; without it (laptop mode) nobody signs in.

Images are read through :func:`app_support.read_volume_image` only: a path from the agent,
a widget or the ``?ad=`` URL parameter that escapes the volume is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import PurePosixPath
from typing import Any

import streamlit as st

from adrag_app.access.roles import (
    ACCESS_FILE,
    AccessFileError,
    Person,
    allowed,
    load_access,
    person_for,
)
from adrag_app.agent.agent import DONE, PROPOSED, SHOWING, Agent, AgentState, Reply
from adrag_app.agent.llm_agent import make_agent as build_agent
from adrag_app.creative.placements import PlacementError, load_placements
from adrag_app.planner.planner import make_planner
from adrag_app.planner.segments import SegmentsFileError, load_catalog
from adrag_app.service import reviews
from adrag_app.service.ad_service import list_brand_images
from adrag_app.service.creatives import export_zip
from adrag_app.service.tool import DEFAULT_PLACEMENTS, ServiceTool
from adrag_app.ui import support
from adrag_assets import volume as layout
from adrag_assets.embeddings.spec import RANDOM_WARNING
from adrag_assets.images.reviews import ARCHIVE, KEEP, RESTORE
from adrag_assets.index.milvus import MilvusError, MilvusIndex
from adrag_assets.index.search import IndexNotReady
from adrag_assets.settings import Settings, SettingsError, apply_secrets, load_settings

log = logging.getLogger("adrag_app.app")

CONVERSATION = "conversation"
CHAT = "chat_message"
BRAND = "brand_choice"
SEGMENT_FIELD = "segment_field"
UPLOAD_SEEN = "upload_seen"
PLACEMENTS = "placements_choice"
GALLERY_SEGMENT = "gallery_segment"
GALLERY_MINE = "gallery_mine"
PREVIEW_PX = 640  # a creative as the conversation shows it; downloads are full size
THUMB_PX = 480  # in the gallery
GALLERY_ROWS = 12
DUPLICATE_GROUPS = 20  # groups shown at once; archiving some brings the next ones up
DUPLICATE_PX = 240
REVIEW_TOGGLE = "review_duplicates"
MIN_ROW_RATIOS = 2.6  # a row of sizes is at least this many heights wide


def _secrets() -> dict[str, Any]:
    try:
        return dict(st.secrets.to_dict())
    except Exception:  # no secrets.toml anywhere: configuration is the environment alone
        return {}


# Wide: an ad's sizes are shown side by side.
st.set_page_config(page_title="adrag: ads from your photos", page_icon="🐾", layout="wide")
apply_secrets(_secrets())
try:
    settings = load_settings()
except SettingsError as e:  # a malformed ADRAG_* variable: say which, do not show a traceback
    st.error(f"adrag's configuration is not valid: {e}")
    st.stop()
config = settings.app
# A folder or a bucket: every read below goes through the Volume, never a local path.
volume = layout.open_volume(settings.volume_uri)
session = st.session_state


def conversation() -> support.Conversation:
    """This session's conversation (see :class:`support.Conversation` for why it is changed
    only through its methods, never through ``st.session_state``)."""
    return session.setdefault(CONVERSATION, support.Conversation())


@st.cache_resource(show_spinner=False)
def shared_tool(settings: Settings) -> ServiceTool:
    """One tool (Milvus client, encoder, generator) per configuration for all sessions:
    building them is most of a turn's time. Keyed on the settings, so another home differs."""
    index = MilvusIndex(settings.milvus_uri, settings.milvus_token, settings.index_alias)
    return ServiceTool(settings, index=index)


@st.cache_data(ttl=30, show_spinner=False)
def _healthy_index(settings: Settings) -> support.IndexHealth:
    health = support.index_health(settings)
    if not health.ok:
        # Not cached: an index being filled (adrag up's catch-up, the follow sensor) must show
        # as soon as it answers, not up to 30 s later.
        raise _NotHealthy(health)
    return health


class _NotHealthy(Exception):
    def __init__(self, health: support.IndexHealth) -> None:
        self.health = health


def cached_health(settings: Settings) -> support.IndexHealth:
    # A few seconds stale is fine in a sidebar; asking Milvus on every rerun is not. Only a
    # healthy answer is cached (st.cache_data does not keep a call that raised).
    try:
        return _healthy_index(settings)
    except _NotHealthy as e:
        return e.health


def make_agent() -> Agent:
    # The planner is built per run so a changed environment (a new LLM endpoint) or segments
    # file applies.
    tool = shared_tool(settings)
    try:
        catalog = load_catalog(settings.volume_uri)
    except SegmentsFileError as e:
        st.warning(f"The brand's segments file cannot be used, so the built-in one is: {e}")
        catalog = None
    planner = make_planner(settings.llm, catalog=catalog, vocabulary=tool.label_counts)
    return build_agent(tool, planner, settings.llm, user=config.user, person=person)


def run_turn(message: str, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One agent turn on ``state``: (the new state, the reply as the transcript keeps it). An
    unexpected failure is said plainly and leaves the state as it was."""
    current = AgentState.from_dict(state)
    current.brand = session.get(BRAND) or None
    current.placements = list(session.get(PLACEMENTS) or DEFAULT_PLACEMENTS)
    try:
        current, reply = make_agent().handle(current, message)
    except Exception as e:
        log.exception("agent turn failed")
        reply = Reply(
            text=f"Something went wrong ({type(e).__name__}: {e}). Nothing changed; try again.",
            phase=current.phase,
            error="internal",
        )
    shown = {
        "text": reply.text,
        "notes": reply.notes,
        "error": reply.error,
        "candidate": reply.candidate,
        "ad": reply.ad,
    }
    return current.to_dict(), shown


def take_turns(waiting: list[tuple[support.Pending, Any]]) -> None:
    """Each queued item's turn, in order, its reply drawn in its slot. An item an earlier run
    finished meanwhile (it was stopped by the message that started this run, but its turn
    went on) only has its reply drawn."""
    convo = conversation()
    # Until its turn comes, a queued message says it waits (the first one has the spinner).
    queued = [slot.empty() for _, slot in waiting]
    for note in queued[1:]:
        note.caption("Queued: answered after the message before it.")
    for n, (item, slot) in enumerate(waiting):
        queued[n].empty()
        with slot:
            if convo.reply_to(item.id) is None:
                with st.spinner(support.pending_text(item.text, convo.phase)):
                    convo.work_until(item, run_turn)
            reply = convo.reply_to(item.id)
            if reply is None:  # a start over came first: the page is drawn again without it
                st.rerun()
            latest = n == len(waiting) - 1
            show_message(reply, f"r-{item.id}", latest=latest, phase=convo.phase)


# -- rendering -------------------------------------------------------------------------------


def show_candidate(candidate: dict[str, Any]) -> None:
    try:
        data = support.read_volume_image(volume, candidate["path"])
    except support.RefusedPath as e:
        st.error(f"This photo is not shown: {e}")
        return
    breed = (candidate.get("labels") or {}).get("breed")
    number = candidate.get("number", int(candidate["rank"]) + 1)
    caption = f"Photo {number} of {candidate.get('of', 3)}" + (f" · {breed}" if breed else "")
    st.image(data, caption=caption, width=420)
    with st.expander("Engineering details"):
        st.caption(
            f"Path `{candidate['path']}` · score {candidate['score']:.4f} · "
            f"image id `{candidate.get('image_id', '')[:16]}` · tool rank {candidate['rank']}"
        )


@st.cache_data(max_entries=256, show_spinner=False)
def _preview(uri: str, path: str, px: int) -> bytes:
    # Keyed on the path: a creative is never rewritten (an edit is a new file).
    return support.preview(support.read_volume_image(uri, path, under=layout.ADS), px)


@st.cache_data(ttl=60, show_spinner=False)
def _past_creatives(uri: str, latest: str) -> list[dict[str, Any]]:
    # ``latest`` (the ad on screen) is in the key: a new ad or version shows at once.
    return support.past_creatives(uri)


def _placement_labels() -> dict[str, str]:
    try:
        return {name: p.label for name, p in load_placements(volume).items()}
    except PlacementError as e:
        st.error(f"The placements file cannot be used: {e}")
        return {}


def show_sizes(creatives: list[dict[str, Any]], key: str, *, px: int = PREVIEW_PX) -> None:
    """Every size of one ad side by side, at one height (a column as wide as its ratio)."""
    labels = _placement_labels()
    ratios = [max(0.3, c.get("width", 1) / max(1, c.get("height", 1))) for c in creatives]
    # An empty column keeps two tall sizes from filling a wide page (one screen high at most).
    spacer = [MIN_ROW_RATIOS - sum(ratios)] if sum(ratios) < MIN_ROW_RATIOS else []
    columns = st.columns(ratios + spacer)
    for creative, column in zip(creatives, columns, strict=False):
        with column:
            try:
                data = _preview(volume.uri, creative["path"], px)
            except support.RefusedPath as e:
                st.error(f"This creative is not shown: {e}")
                continue
            size = f"{creative['width']}×{creative['height']}" if "width" in creative else ""
            label = labels.get(creative.get("placement", ""), creative.get("placement", "Ad"))
            st.image(data, caption=" · ".join(p for p in (label, size) if p), width="stretch")
            st.download_button(
                "PNG",
                lambda path=creative["path"]: support.read_volume_image(volume, path, layout.ADS),
                file_name=PurePosixPath(creative["path"]).name,
                mime="image/png",
                key=f"png-{key}-{creative['path']}",
                on_click="ignore",
                icon=":material/download:",
                help=f"Download this size ({size})",
            )


def _zip_name(creatives: list[dict[str, Any]]) -> str:
    first = creatives[0]
    variant, version = first.get("variant", 0) + 1, first.get("version", 1)
    return f"adrag-{first.get('set_id', 'ad')}-v{variant}-r{version}.zip"


def show_ad(ad: dict[str, Any], key: str) -> None:
    creatives = ad.get("creatives") or [{"path": ad["path"]}]
    first = creatives[0]
    if first.get("headline"):
        st.markdown(f"**{first['headline']}**  \n{first.get('primary_text', '')}")
    show_sizes(creatives, key)
    with st.expander("Engineering details"):
        st.caption(
            "Saved in the volume at "
            + ", ".join(f"`{c['path']}`" for c in creatives)
            + (f" · version {ad['version']}" if ad.get("version") else "")
            + (f", made from `{ad['parent']}`" if ad.get("parent") else "")
        )
    left, right = st.columns(2)
    with left:
        if "placement" in first:
            paths = [c["path"] for c in creatives]
            st.download_button(
                f"Download the set ({len(paths)} sizes, zip)",
                lambda: export_zip(paths, settings),
                file_name=_zip_name(creatives),
                mime="application/zip",
                key=f"zip-{key}",
                on_click="ignore",
                icon=":material/folder_zip:",
                type="primary",
                help="Every size of this ad and manifest.csv (file, placement, size, headline, "
                "primary text, call to action), ready for the ads manager.",
            )
    with right:
        st.link_button(
            "See it in Dagster", config.asset_url("ad_creatives"), icon=":material/open_in_new:"
        )


def show_gallery() -> None:
    """Past creatives from the volume's sidecars, one row per version of an ad."""
    try:
        latest = (conversation().snapshot()[2].get("ad") or {}).get("path", "")
        found = _past_creatives(volume.uri, latest)
    except OSError as e:
        st.error(f"The past creatives cannot be read: {e}")
        return
    if not found:
        st.info("No creatives yet: the ads you make appear here.")
        return
    if person is not None and st.toggle("My ads", key=GALLERY_MINE, help="Only the ads you made"):
        found = [m for m in found if m.get("user_subject") == person.subject]
        if not found:
            st.info("You have not made an ad yet.")
            return
    segments = sorted({str(m.get("segment") or "") for m in found} - {""})
    segment = st.selectbox(
        "Segment", ["All segments", *segments], key=GALLERY_SEGMENT, help="Show one segment's ads"
    )
    rows = support.gallery_sets(
        found, "" if segment == "All segments" else segment, order=list(_placement_labels())
    )
    for n, row in enumerate(rows[:GALLERY_ROWS]):
        first = row[0]
        with st.container(border=True):
            st.markdown(
                f"**{first.get('headline', '')}** · {first.get('segment') or 'no segment'} · "
                f"version {first.get('version', 1)} · "
                f"{str(first.get('created_at', ''))[:16].replace('T', ' ')} UTC"
            )
            show_sizes(row, f"gallery-{n}", px=THUMB_PX)
            paths = [m["path"] for m in row]
            st.download_button(
                f"Download the set ({len(paths)} sizes, zip)",
                lambda paths=paths: export_zip(paths, settings),
                file_name=_zip_name(row),
                mime="application/zip",
                key=f"gallery-zip-{n}-{first['path']}",
                on_click="ignore",
                icon=":material/folder_zip:",
            )
    if len(rows) > GALLERY_ROWS:
        st.caption(f"The {GALLERY_ROWS} newest of {len(rows)}; the rest are kept in the volume.")


@st.cache_resource(ttl=300, show_spinner="Looking for near duplicates...")
def _duplicates(settings: Settings) -> reviews.DuplicateGroups:
    # Range searches over the whole collection: not on every rerun. A decision clears it.
    # A resource cache: the frozen result is shared as it is, never pickled (a copy of the
    # class re-imported in the same process, as tests do, cannot be pickled).
    return reviews.duplicate_groups(settings, shared_tool(settings).index)


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(uri: str, image_id: str, path: str) -> bytes:
    # Keyed on the image id too: the same path with other bytes is another photo.
    return support.preview(support.read_volume_image(uri, path), DUPLICATE_PX)


def reviewer() -> str:
    """Who a duplicate decision is recorded as: the signed-in user, else ADRAG_APP_USER."""
    return person.display if person is not None else config.user


def on_review(image_ids: list[str], action: str) -> None:
    try:
        if action == KEEP:
            reviews.keep(settings, image_ids, reviewer())
        else:
            reviews.archive(settings, image_ids, reviewer(), undo=action == RESTORE)
    except ValueError as e:
        st.toast(f"Not recorded: {e}")
    _duplicates.clear()


def show_duplicates() -> None:
    """Near-duplicate groups with keep / archive per photo (undo for the archived)."""
    if not allowed(person.role if person else None, "review"):
        st.info("Archiving duplicate photos needs the admin role.")
        return
    # Behind a toggle: every tab's content runs on every rerun (each chat turn), and looking
    # for duplicates searches the whole collection.
    if not st.toggle("Review near duplicates", key=REVIEW_TOGGLE):
        st.caption("Photos of the same shot (re-exports, resized copies) side by side.")
        return
    try:
        found = _duplicates(settings)
    except (IndexNotReady, MilvusError) as e:
        st.info(f"No duplicates to review: {e}")
        return
    if not found.groups:
        st.info(f"No near duplicates among {found.photos} photos.")
        return
    st.caption(
        f"{len(found.groups)} groups of near duplicates among {found.photos} photos (cosine "
        f"≥ {found.threshold}). An archived photo leaves search and new ads; its file stays in "
        "the volume, and Undo brings it back."
    )
    for n, group in enumerate(found.groups[:DUPLICATE_GROUPS]):
        with st.container(border=True):
            ids = [p.image_id for p in group]
            for col, p in zip(st.columns(max(len(group), 3)), group, strict=False):
                with col:
                    try:
                        st.image(_thumbnail(volume.uri, p.image_id, p.path))
                    except (support.RefusedPath, OSError) as e:
                        st.caption(f"not shown: {e}")
                    st.caption(f"`{p.path}`")
                    # An archived photo offers its undo in the place of the archive button.
                    if p.archived:
                        st.caption(f"Archived by {p.by or 'someone'}")
                    label, action, icon = (
                        ("Undo", RESTORE, ":material/undo:")
                        if p.archived
                        else ("Archive", ARCHIVE, ":material/archive:")
                    )
                    st.button(
                        label,
                        key=f"dup-{action}-{p.image_id}",
                        on_click=on_review,
                        args=([p.image_id], action),
                        icon=icon,
                    )
            kept = all(p.decision == KEEP for p in group)
            st.button(
                "Kept: all reviewed" if kept else "Keep all",
                key=f"dup-keep-{n}-{ids[0]}",
                on_click=on_review,
                args=(ids, KEEP),
                disabled=kept,
            )
    if len(found.groups) > DUPLICATE_GROUPS:
        st.caption(f"The first {DUPLICATE_GROUPS} of {len(found.groups)} groups.")


def show_actions(message: dict[str, Any], key: str, phase: str) -> None:
    """Buttons for the answers the latest reply asks for; typing them works the same. A
    viewer gets no button that generates (the tool refuses it too)."""
    may_generate = allowed(person.role if person else None, "generate")
    if message.get("candidate") and phase == SHOWING:
        actions = [("Use this photo", "yes", "primary")] if may_generate else []
        actions.append(("Next", "no", "secondary"))
        if message["candidate"].get("number", 1) > 1:
            actions.append(("Back", "back", "secondary"))
        actions.append(("More like this", "more like this", "secondary"))
    elif phase == PROPOSED and not message.get("candidate"):
        actions = [("Search", "yes", "primary"), ("Another idea", "no", "secondary")]
    elif message.get("ad") and phase == DONE and may_generate:
        actions = [
            ("Another variant", "another variant", "primary"),
            ("More like this", "more like this", "secondary"),
            ("Warmer", "make it warmer", "secondary"),
        ]
        if message["ad"].get("parent"):
            actions.append(("Undo", "undo", "secondary"))
    else:
        return
    with st.container(horizontal=True):
        for label, answer, kind in actions:
            st.button(label, key=f"act-{key}-{answer}", type=kind, on_click=send, args=(answer,))


def show_message(
    message: dict[str, Any], key: str, *, latest: bool = False, phase: str = ""
) -> None:
    with st.chat_message(message["role"]):
        if message.get("error"):
            st.error(message["text"])
        else:
            st.markdown(message["text"])
        for note in message.get("notes") or []:
            st.info(note)
        if message.get("candidate"):
            show_candidate(message["candidate"])
        if message.get("ad"):
            show_ad(message["ad"], key)
        if latest and message["role"] == "assistant":
            show_actions(message, key, phase)


def show_shared_ad() -> None:
    """An ad named in the URL (``?ad=ads/...png``), e.g. from a link someone shared."""
    wanted = st.query_params.get("ad")
    if not wanted:
        return
    try:
        support.read_volume_image(volume, wanted, under=layout.ADS)
    except support.RefusedPath as e:
        st.error(f"The ad in this link cannot be shown: {e}")
        return
    with st.expander("Shared ad", expanded=True):
        try:
            meta = json.loads(volume.read_bytes(wanted.removesuffix(".png") + ".json", 1_000_000))
        except (OSError, ValueError):
            meta = {}
        show_ad(
            {
                "path": wanted,
                "creatives": [meta if meta.get("path") == wanted else {"path": wanted}],
            },
            "shared",
        )


# -- callbacks (run before the script: what was sent is queued before anything else runs) ----


def send(text: str) -> None:
    conversation().submit(text, config.max_message_chars)


def on_chat() -> None:
    send(session.get(CHAT) or "")


def on_segment() -> None:
    segment = (session.get(SEGMENT_FIELD) or "").strip()
    if not segment:
        return
    send(f"Segment: {segment}")


def on_restart() -> None:
    conversation().submit("", config.max_message_chars, kind=support.RESTART)


# -- sign-in ---------------------------------------------------------------------------------


def _auth_section() -> dict[str, Any] | None:
    auth = _secrets().get("auth")
    return auth if isinstance(auth, dict) and auth else None


def _provider(auth: dict[str, Any]) -> str | None:
    """None for one provider configured in ``[auth]`` itself, else the first ``[auth.NAME]``."""
    if "client_id" in auth:
        return None
    return next((name for name, value in auth.items() if isinstance(value, dict)), None)


def _sign_out_button() -> None:
    st.button("Sign out", on_click=st.logout, icon=":material/logout:")


def signed_in() -> Person | None:
    """The signed-in person, or None without ``[auth]`` (laptop mode). Stops the page with
    the sign-in page for a visitor, and with one sentence for a user who has no role."""
    auth = _auth_section()
    if auth is None:
        return None
    if not st.user.is_logged_in:
        st.title("adrag")
        st.write("Sign in with your company account to search the brand's photos and make ads.")
        st.button(
            "Sign in", on_click=st.login, args=(_provider(auth),), type="primary",
            icon=":material/login:",
        )  # fmt: skip
        st.stop()
    claims = st.user.to_dict()
    email = str(claims.get("email") or claims.get("sub") or "")
    try:
        rules = None if config.roles_claim else load_access(settings.volume_uri)
    except AccessFileError as e:
        st.error(f"Your role cannot be decided: the access file is not valid ({e}).")
        _sign_out_button()
        st.stop()
    found = person_for(claims, claim=config.roles_claim, rules=rules)
    if found is None:
        where = (
            f"the {config.roles_claim!r} claim of your company account"
            if config.roles_claim
            else volume.display(ACCESS_FILE)
        )
        st.error(f"{email} has no role in adrag: an admin can give you one in {where}.")
        _sign_out_button()
        st.stop()
    return found


# -- the page --------------------------------------------------------------------------------

person = signed_in()
st.title("adrag")
st.caption(
    "Name your audience; I'll propose a pet, find our best matching photo and make the ad in "
    "every size you pick."
)
show_shared_ad()

# No max_chars: Streamlit would cut a longer message silently; the check refuses it in words.
st.chat_input(
    "An audience segment, yes / not quite / back, a change (warmer, a headline...), or your "
    "own description",
    key=CHAT,
    on_submit=on_chat,
)
chat_tab, gallery_tab, duplicates_tab = st.tabs(["Conversation", "Past creatives", "Duplicates"])
with chat_tab:
    transcript, queue, state = conversation().snapshot()
    for i, message in enumerate(transcript):
        # With a message waiting, the last reply's buttons must not be drawn: they answer it.
        last = not queue and i == len(transcript) - 1
        show_message(message, str(i), latest=last, phase=state["phase"])
    waiting = []
    for item in queue:
        if item.kind == support.MESSAGE:
            show_message({"role": "user", "text": item.text}, f"q-{item.id}")
        waiting.append((item, st.container()))
    take_turns(waiting)
with gallery_tab:
    show_gallery()
with duplicates_tab:
    show_duplicates()

# The sidebar is written last so it reflects this turn (the segment may just have changed).
with st.sidebar:
    if person is not None:
        st.caption(f"Signed in as **{person.display}** · {person.role.label}")
        _sign_out_button()
    st.header("Campaign")
    session[SEGMENT_FIELD] = conversation().snapshot()[2]["segment"]
    st.text_input(
        "Audience segment",
        key=SEGMENT_FIELD,
        on_change=on_segment,
        placeholder="e.g. young urban professionals",
        help="Change it to start over with a new segment.",
    )
    st.button("Start over", on_click=on_restart, icon=":material/restart_alt:")

    labels = _placement_labels()
    if labels:
        st.pills(
            "Placements",
            list(labels),
            selection_mode="multi",
            default=[p for p in DEFAULT_PLACEMENTS if p in labels],
            format_func=lambda name: labels[name],
            key=PLACEMENTS,
            help="The sizes the next ad is made in. Changing them does not redo an ad already "
            "made: ask for it, e.g. *as a story*.",
        )

    st.subheader("Brand image")
    # Changing the brand kit is an admin's; the others pick from what is there.
    upload = (
        st.file_uploader(
            "Upload a product image",
            type=list(support.UPLOAD_FORMATS.values()) + ["jpeg"],
            max_upload_size=config.max_upload_mb,
            help=f"PNG, JPEG or WebP, at most {config.max_upload_mb} MB.",
        )
        if allowed(person.role if person else None, "brand")
        else None
    )
    if upload is not None and session.get(UPLOAD_SEEN) != upload.file_id:
        session[UPLOAD_SEEN] = upload.file_id
        try:
            session[BRAND] = support.save_brand_upload(
                settings, upload.name, upload.getvalue(), config.max_upload_mb
            )
            st.success(f"Saved as `{session[BRAND]}`")
        except support.UploadRejected as e:
            st.error(f"That upload was not used: {e}.")
    brands = list_brand_images(settings)
    if session.get(BRAND) not in brands:
        session[BRAND] = brands[0] if brands else None
    if brands:
        st.selectbox("Use", brands, key=BRAND)
        try:
            st.image(
                support.read_volume_image(volume, session[BRAND], under=layout.BRAND), width=90
            )
        except support.RefusedPath as e:
            st.error(str(e))
    else:
        st.warning(
            f"No brand image yet: upload one above, or put it under `brand/` in the volume "
            f"({volume.display(layout.BRAND)})."
        )

    st.subheader("Generator")
    label, problem = support.generator_label()
    st.write(label)
    if problem:
        st.error(problem)

    health = cached_health(settings)
    st.subheader("Encoder")
    encoder = health.encoder_id if health.ok else settings.encoder
    if health.encoder_random or (not health.ok and support.encoder_is_random(encoder)):
        st.warning(
            f"**{RANDOM_WARNING[0].upper() + RANDOM_WARNING[1:]}.** Set ADRAG_ENCODER to a "
            "real CLIP model for meaningful photo matches.",
            icon=":material/warning:",
        )

    st.subheader("Index")
    if health.ok:
        st.write(f"{health.rows} photos · last sync {support.describe_time(health.synced_at)}")
    else:
        st.error(health.problem)

    def embedding_news() -> None:
        if news := support.embedding_news(settings):
            st.info(news, icon=":material/sync:")

    # While a model switch or a big upload is embedded, its line refreshes on its own.
    if support.embedding_news(settings):
        st.fragment(run_every=5)(embedding_news)()
    with st.expander("Engineering details"):
        st.caption(
            f"Encoder `{encoder}` · Delta version {health.synced_version or '?'} · "
            f"collection `{health.collection}` · volume `{volume.uri}`"
        )
    st.link_button("Dagster UI", config.dagster_url, icon=":material/open_in_new:")
