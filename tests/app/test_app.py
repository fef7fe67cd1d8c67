"""The Streamlit app with AppTest, over the session's indexed pet photos (tests/app_home.py).

A whole conversation from segment to ad, with the ad on disk and its materialization in
Dagster; the sidebar (brand upload checks, generator, encoder warning, index health);
refused paths; plain words when there is no index. The local compositor generates: nothing
here touches the network.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from adrag_app.service.ad_service import milvus_filter
from adrag_app.ui import support as app_support
from adrag_assets.embeddings.spec import RANDOM_WARNING
from adrag_assets.index.milvus import MilvusIndex
from tests.support.app_home import IndexedHome, forget_mlflow, indexed_home, using_env
from tests.support.data import REPO

APP = REPO / "adrag_app" / "ui" / "app.py"
DAGSTER_URL = "http://dagster.example:3123"
ASSET = dg.AssetKey("ad_creatives")
TIMEOUT = 120  # first turns load the encoder and MLflow; generous but bounded


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    shared = indexed_home(request, tmp_path_factory)
    with using_env({**shared.env, "ADRAG_DAGSTER_URL": DAGSTER_URL}):
        yield shared
        forget_mlflow()


def start(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    return at


def say(at: AppTest, text: str):
    started = time.monotonic()
    at.chat_input[0].set_value(text).run()
    print(f"say {text!r}: {time.monotonic() - started:.2f}s")
    assert not at.exception, at.exception
    return at.chat_message[-1]


def agent_state(at: AppTest) -> dict:
    return at.session_state["conversation"].state


def captions(message) -> list[str]:
    return [caption for img in message.image for caption in img.captions]


def labels(at: AppTest) -> list[str]:
    """The answer buttons under the latest reply."""
    return [b.label for b in at.button if b.key and b.key.startswith("act-")]


def click(at: AppTest, label: str):
    started = time.monotonic()
    [button] = [b for b in at.button if b.key and b.key.startswith("act-") and b.label == label]
    button.click().run(timeout=TIMEOUT)
    print(f"click {label!r}: {time.monotonic() - started:.2f}s")
    assert not at.exception, at.exception
    return at.chat_message[-1]


def ad_records(home: IndexedHome) -> list:
    with dg.DagsterInstance.get() as instance:
        return instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ASSET), limit=1000
        ).records


def test_a_whole_conversation_from_segment_to_ad(home: IndexedHome) -> None:
    settings = home.settings()
    before = len(ad_records(home))
    at = start()
    assert "Which audience segment" in at.chat_message[0].markdown[0].value

    proposal = say(at, "young urban professionals")
    assert "How about" in proposal.markdown[0].value and not captions(proposal)

    first = click(at, "Search")
    assert captions(first)[0].startswith("Photo 1 of 3")
    assert labels(at) == ["Use this photo", "Next", "More like this"]
    second = click(at, "Next")
    assert captions(second)[0].startswith("Photo 2 of 3")
    assert labels(at) == ["Use this photo", "Next", "Back", "More like this"]
    assert captions(click(at, "Back"))[0].startswith("Photo 1 of 3")
    second = say(at, "hmm, not this one")  # typing works as well as the buttons
    assert captions(second)[0].startswith("Photo 2 of 3")
    state = agent_state(at)
    shown = state["candidates"][1]["path"]

    done = click(at, "Use this photo")
    # The default creative set: the Meta feed and a story, side by side.
    assert captions(done) == ["Meta feed 4:5 · 1080×1350", "Stories / Reels 9:16 · 1080×1920"]
    # The buttons stay after an ad (they disappeared before).
    assert labels(at) == ["Another variant", "More like this", "Warmer"]
    state = agent_state(at)
    assert state["phase"] == "done"
    ad = state["ad"]
    assert ad["seed"]["path"] == shown and ad["brand"] == "brand/bottle.png"
    assert [c["placement"] for c in ad["creatives"]] == ["meta_feed", "story"]
    for creative in ad["creatives"]:
        assert (settings.volume / creative["path"]).is_file()
    sidecar = json.loads((settings.volume / ad["sidecar"]).read_text())
    assert sidecar["segment"] == "young urban professionals" and sidecar["seed_path"] == shown
    own = [b.label for b in done.get("download_button")]
    assert own == ["PNG", "PNG", "Download the set (2 sizes, zip)"]
    links = [b.proto.url for b in at.get("link_button")]
    assert f"{DAGSTER_URL}/assets/ad_creatives" in links
    assert not any(ad["path"] in m.value for m in done.markdown)  # paths: engineering only
    assert any(ad["path"] in c.value for c in done.caption)

    records = ad_records(home)
    assert len(records) == before + 2  # one materialization per creative
    paths = {r.asset_materialization.metadata["path"].value for r in records[:2]}
    assert paths == {c["path"] for c in ad["creatives"]}
    # The page re-renders the whole conversation from the session on every rerun.
    at.run()
    assert len(at.chat_message) == 13 and "Stories" in captions(at.chat_message[-1])[1]

    # A placement toggled in the sidebar: the next set is made in it too.
    at.sidebar.button_group(key="placements_choice").set_value(
        ["meta_feed", "story", "google_square"]
    ).run()
    say(at, "show me a beagle in a park")
    done = click(at, "Use this photo")
    assert captions(done)[-1] == "Google Display square · 1200×1200"

    # The gallery of past creatives reads the sidecars, filtered by segment.
    at.selectbox(key="gallery_segment").set_value("young urban professionals").run()
    gallery = [m.value for m in at.tabs[1].markdown]
    assert gallery and all("young urban professionals" in m for m in gallery)


def test_more_like_this_shows_photos_like_the_one_on_screen(home: IndexedHome) -> None:
    at = start()
    say(at, "show me a samoyed")
    rejected = agent_state(at)["candidates"][0]["image_id"]
    click(at, "Next")  # photo 1 is rejected: it must not come back
    picked = agent_state(at)["candidates"][1]["image_id"]

    reply = click(at, "More like this")
    assert captions(reply)[0].startswith("Photo 1 of 3")
    assert "like the photo you picked" in reply.markdown[0].value
    state = agent_state(at)
    shown = [c["image_id"] for c in state["candidates"]]
    assert state["like"] == picked and len(shown) == 3
    assert picked not in shown and rejected not in shown
    # Ranked by the picked photo's own vector, as the index ranks it, within the filters of
    # the description (a samoyed) and the conversation's exclusions.
    s = home.settings()
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    name = index.live_collection()
    expr = milvus_filter(state["proposal"]["filters"], [picked, rejected])
    nearest = index.search_dense(name, index.vectors(name, [picked])[picked], 3, expr)
    assert shown == [h.image_id for h in nearest]
    index.close()


def test_the_sidebar_shows_the_setup(home: IndexedHome) -> None:
    at = start()
    text = " ".join(m.value for m in at.sidebar.markdown)
    assert "Local compositor" in text
    assert "random:adrag-tiny" in " ".join(c.value for c in at.sidebar.caption)
    assert "Delta" not in text and "adrag_random" not in text  # engineering details only
    assert any(RANDOM_WARNING.lower() in w.value.lower() for w in at.sidebar.warning)
    assert "296 photos · last sync" in text
    assert at.sidebar.selectbox[0].value == "brand/bottle.png"

    # The segment field starts the conversation over on a new segment.
    at.sidebar.text_input[0].set_value("retirees").run()
    assert agent_state(at)["segment"] == "retirees"
    assert "How about" in at.chat_message[-1].markdown[0].value
    at.sidebar.button[0].click().run()  # start over
    assert agent_state(at)["phase"] == "awaiting_segment"
    assert len(at.chat_message) == 1


def _image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, fmt)
    return out.getvalue()


def test_brand_uploads_are_validated_and_used(home: IndexedHome) -> None:
    settings = home.settings()
    at = start()
    uploader = at.sidebar.get("file_uploader")[0]
    uploader.set_value(("not-an-image.png", b"<?php echo 1; ?>", "image/png"))
    at.run()
    assert any("not a readable image" in e.value for e in at.sidebar.error)
    assert at.sidebar.selectbox[0].value == "brand/bottle.png"

    uploader = at.sidebar.get("file_uploader")[0]
    uploader.set_value(("../../My Logo!.png", _image_bytes("JPEG"), "image/png"))
    at.run()
    chosen = at.sidebar.selectbox[0].value
    assert chosen.startswith("brand/uploads/my-logo-") and chosen.endswith(".jpg")
    assert Image.open(settings.volume / chosen).format == "JPEG"

    # The chosen brand goes into the ad.
    say(at, "show me a pug")
    say(at, "yes")
    assert agent_state(at)["ad"]["brand"] == chosen


def test_upload_checks(home: IndexedHome, tmp_path: Path) -> None:
    settings = home.settings()
    with pytest.raises(app_support.UploadRejected, match="larger than 1 MB"):
        app_support.save_brand_upload(settings, "big.png", b"x" * (1024 * 1024 + 1), 1)
    with pytest.raises(app_support.UploadRejected, match="GIF is not accepted"):
        app_support.save_brand_upload(settings, "a.gif", _image_bytes("GIF"), 5)
    with pytest.raises(app_support.UploadRejected, match="empty"):
        app_support.save_brand_upload(settings, "a.png", b"", 5)
    truncated = _image_bytes("PNG", (300, 300))[:200]
    with pytest.raises(app_support.UploadRejected, match="not a readable image"):
        app_support.save_brand_upload(settings, "a.png", truncated, 5)


def test_paths_that_escape_the_volume_are_refused(home: IndexedHome, tmp_path: Path) -> None:
    settings = home.settings()
    volume = settings.volume
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    (volume / "ads").mkdir(exist_ok=True)
    link = volume / "ads" / "link.png"
    if not link.is_symlink():
        os.symlink(secret, link)
    refused = [
        "../../etc/passwd",
        "ads/../../secret.png",
        str(secret),
        "/etc/passwd",
        "ads/link.png",  # a symlink out of the volume
        "raw/pets/beagle_117.jpg",  # inside the volume, but not an ad
        "ads/missing.png",
    ]
    for wanted in refused:
        at = start({"ad": wanted})
        assert at.error and "cannot be shown" in at.error[0].value, wanted
        # Only the gallery's own buttons: nothing of the refused link is served.
        assert not [b for b in at.get("download_button") if "shared" in b.key]
    for wanted in refused[:5]:
        with pytest.raises(app_support.RefusedPath):
            app_support.read_volume_image(volume, wanted)

    # A real ad in the URL is shown, with its download button.
    ads = sorted(p for p in (volume / "ads").rglob("*.png") if not p.is_symlink())
    if not ads:
        pytest.skip("no ad generated yet in this session")  # only when run on its own
    at = start({"ad": ads[0].relative_to(volume).as_posix()})
    assert not at.error
    shared = [b.key for b in at.get("download_button") if "shared" in b.key]
    assert f"png-shared-{ads[0].relative_to(volume).as_posix()}" in shared


def test_no_index_is_said_in_plain_words(home: IndexedHome, tmp_path: Path) -> None:
    empty = tmp_path / "empty-home"
    (empty / "volume" / "brand").mkdir(parents=True)
    with using_env(
        {
            **home.env,
            "ADRAG_HOME": str(empty),
            "ADRAG_MILVUS_URI": str(empty / "milvus" / "adrag.db"),
            "ADRAG_TRACING": "off",
        }
    ):
        at = start()
        assert any(
            "No index yet" in e.value and "adrag ingest" in e.value for e in at.sidebar.error
        )
        assert any("No brand image yet" in w.value for w in at.sidebar.warning)
        say(at, "retirees")
        reply = say(at, "yes")
        assert "no photos in the search index" in reply.error[0].value
        assert "adrag ingest" in reply.error[0].value
        assert agent_state(at)["phase"] == "proposed"


def test_the_responses_agent_over_the_real_service_is_traced(home: IndexedHome) -> None:
    """The MLflow model end to end: real retrieval and generation, one trace per turn."""
    import mlflow

    from adrag_app.agent.responses_agent import AdragResponsesAgent
    from adrag_assets import tracing

    model = AdragResponsesAgent()
    state = None
    for text in ("families with young children", "yes", "yes"):
        response = model.predict(
            {"input": [{"role": "user", "content": text}], "custom_inputs": {"state": state}}
        )
        state = response.custom_outputs["state"]
    assert response.custom_outputs["phase"] == "done"
    ad = response.custom_outputs["ad"]
    assert (home.settings().volume / ad["path"]).is_file()
    calls = [item for item in response.output if item.type == "function_call"]
    assert json.loads(calls[0].arguments)["generate"] is True

    tracing.flush()
    trace = mlflow.search_traces(return_type="list", max_results=1)[0]
    spans = {s.name: s for s in trace.data.spans}
    assert spans["predict"].span_type == "AGENT" and spans["predict"].parent_id is None
    tool = spans["find_or_make_ad"]
    assert tool.parent_id == spans["agent_turn"].span_id
    assert spans["make_creatives"].parent_id == tool.span_id
    assert spans["retrieve"].parent_id == spans["make_creatives"].span_id


def test_a_failed_generation_is_said_plainly_and_nothing_is_saved(home: IndexedHome) -> None:
    settings = home.settings()
    ads = settings.volume / "ads"
    before = sorted(ads.rglob("*")) if ads.exists() else []
    records = len(ad_records(home))
    # Replicate forced without a token: the generator cannot start.
    with using_env({**home.env, "ADRAG_GENERATOR": "replicate", "ADRAG_TRACING": "off"}):
        at = start()
        assert any("REPLICATE_API_TOKEN" in e.value for e in at.sidebar.error)
        say(at, "show me a beagle in a park")
        reply = say(at, "yes")
        text = reply.error[0].value
        assert "could not be made" in text and "REPLICATE_API_TOKEN" in text
        assert "Nothing was saved" in text
        assert captions(reply)[0].startswith("Photo 1 of 3")  # the photo stays
        assert agent_state(at)["phase"] == "showing_candidate"
    assert (sorted(ads.rglob("*")) if ads.exists() else []) == before
    assert len(ad_records(home)) == records


def test_a_message_that_may_not_be_read_is_refused_in_the_transcript(home: IndexedHome) -> None:
    at = start()
    reply = say(at, "retirees\x00")
    assert "control character (U+0000)" in reply.error[0].value
    reply = say(at, "y" * 2001)
    assert "longer (2,001 characters) than the 2,000" in reply.error[0].value
    # Shown (shortened) where they were sent, never read: the conversation has not moved.
    assert [m.markdown[0].value for m in at.chat_message[1::2]] == [
        "retirees\ufffd",
        "y" * 200 + "…",
    ]
    assert agent_state(at)["phase"] == "awaiting_segment" and not agent_state(at)["segment"]
    assert "How about" in say(at, "retirees").markdown[0].value
