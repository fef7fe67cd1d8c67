"""Sign-in, roles and the daily limit in a real browser, against a real OpenID Connect provider.

One provider (``oidc-provider-mock`` in a thread, users set through its HTTP API), one app
(``[auth]`` in a secrets.toml given by ``STREAMLIT_SECRETS_FILES``, roles from
``campaigns/access.yaml``, paid generations against the stand-in Replicate server, two a day
per user), one chromium. A visitor sees only the sign-in page; a viewer searches but cannot
generate; a creator generates (the sidecars, the Dagster event and the trace name them), is
refused over the limit with nothing written; a tampered session cookie is refused; sign-out
ends the session.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from oidc_provider_mock import run_server_in_thread

from adrag_app.cli.stack import free_port
from adrag_app.service.creatives import make_creatives
from tests.support.app_browser import AppPage, chromium, creative_sidecars, serving_app, wait_idle
from tests.support.app_home import IndexedHome
from tests.support.data import REPO
from tests.support.fake_replicate import FakeReplicate

ARTIFACTS = REPO / "test-artifacts" / "signin"
TOKEN = "r8_FakeTokenForSignIn0123456789abcdef"
USERS = {  # subject -> claims (the provider's own ids are opaque; emails decide the role)
    "sub-viewer-1": {"email": "vic@brand.com", "name": "Vic Viewer"},
    "sub-creator-2": {"email": "ana@brand.com", "name": "Ana Creator"},
    "sub-outsider-3": {"email": "eve@elsewhere.org", "name": "Eve"},
}
ACCESS = "creator: [ana@brand.com]\nviewer: ['*@brand.com']\n"


@pytest.fixture(scope="module")
def home(home: IndexedHome):
    """The shared home (tests/e2e/conftest.py) with roles, for this module only."""
    settings = home.settings()
    access = Path(settings.volume) / "campaigns" / "access.yaml"
    access.parent.mkdir(parents=True, exist_ok=True)
    access.write_text(ACCESS)
    try:
        yield home
    finally:
        # Other modules share this home: they run without roles or limits.
        access.unlink()
        shutil.rmtree(Path(settings.tables_uri) / "generations", ignore_errors=True)


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread() as server:
        url = f"http://localhost:{server.server_port}"
        for sub, claims in USERS.items():
            request = urllib.request.Request(
                f"{url}/users/{sub}",
                data=json.dumps(claims).encode(),
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 204
        yield url


def _files(volume: Path) -> set[Path]:
    return set((volume / "ads").rglob("*"))


def test_sign_in_roles_and_the_daily_limit_in_a_real_browser(
    home: IndexedHome, provider: str, tmp_path: Path
) -> None:
    port = free_port()
    cookie_secret, client_secret = secrets.token_hex(32), secrets.token_hex(24)
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{cookie_secret}"\n'
        'client_id = "adrag-test"\n'
        f'client_secret = "{client_secret}"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    volume = Path(home.settings().volume)
    # Someone else's ad (free: the local compositor), for the gallery's "My ads" to leave out.
    make_creatives(
        "a dog on grass", ["meta_feed"], 1, user="other@brand.com", settings=home.settings(),
        contact_sheet=False,
    )  # fmt: skip
    before = set(creative_sidecars(volume))
    log = tmp_path / "streamlit.log"
    with (
        chromium() as browser,
        FakeReplicate(TOKEN) as api,
        serving_app(
            home,
            log,
            port=port,
            STREAMLIT_SECRETS_FILES=str(secrets_file),
            ADRAG_GENERATOR="replicate",
            REPLICATE_API_TOKEN=TOKEN,
            ADRAG_REPLICATE_BASE_URL=api.base_url,
            ADRAG_REPLICATE_POLL_INTERVAL="0",
            ADRAG_GENERATIONS_PER_DAY="2",
        ) as url,
    ):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        app = AppPage(context.new_page(), ARTIFACTS)
        page, expect, chat = app.page, app.expect, app.chat
        sign_in_button = page.get_by_role("button", name="Sign in")

        def sign_in(sub: str, expected: str) -> None:
            sign_in_button.click()
            page.locator("input[name=sub]").fill(sub)  # the provider's own form
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(f"{url}/**")
            app.settle(expected)

        def sign_out() -> None:
            page.get_by_role("button", name="Sign out").click()
            # The provider ends its session too (its end_session_endpoint), then the app.
            page.get_by_role("button", name="End session").click()
            page.wait_for_url(f"{url}/**")
            expect(sign_in_button).to_be_visible()

        # A visitor: the sign-in page only, no chat, no photo.
        page.goto(url, timeout=60_000)
        expect(sign_in_button).to_be_visible()
        wait_idle(page)
        expect(chat).to_have_count(0)
        expect(page.get_by_test_id("stImage")).to_have_count(0)
        expect(page.get_by_text("photos ·")).to_have_count(0)
        app.shot("01-visitor.png")

        # Someone the access file does not name: no entry, one sentence why.
        sign_in("sub-outsider-3", "eve@elsewhere.org has no role in adrag")
        expect(chat).to_have_count(0)
        sign_out()

        # A viewer searches and sees photos, but has no button that generates, and the
        # tool refuses when asked in words.
        sign_in("sub-viewer-1", "Signed in as vic@brand.com · viewer")
        app.say("families with young children", "How about")
        app.click("Search", "Photo 1 of 3")
        expect(page.get_by_role("button", name="Next", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Use this photo")).to_have_count(0)
        expect(page.get_by_text("Upload a product image")).to_have_count(0)  # admin's
        app.shot("02-viewer.png")
        app.say("yes", "Making or changing an ad needs the creator role.")
        assert api.creates == [] and not set(creative_sidecars(volume)) - before
        sign_out()

        # A creator makes an ad: two paid generations (the feed's and the story's shape).
        sign_in("sub-creator-2", "Signed in as ana@brand.com · creator")
        app.say("families with young children", "How about")
        app.click("Search", "Photo 1 of 3")
        app.click("Use this photo", "Your ad is ready")
        assert len(api.creates) == 2
        app.shot("03-creator-ad.png")
        made = {k: v for k, v in creative_sidecars(volume).items() if k not in before}
        assert made
        for meta in made.values():
            assert meta["user_subject"] == "sub-creator-2"
            assert meta["user_email"] == meta["user"] == "ana@brand.com"
            assert meta["generator"] == "replicate"

        # Over the day's limit: refused in one sentence, nothing generated or written.
        files = _files(volume)
        app.click("Another variant", "You have used your 2 paid generations for today")
        assert len(api.creates) == 2 and _files(volume) == files
        app.shot("04-over-the-limit.png")

        # "My ads" in the gallery: the creator's one set, none of the other tests' ads.
        page.get_by_role("tab", name="Past creatives").click()
        wait_idle(page)
        rows = page.get_by_text(re.compile(r"· version \d+ · \d{4}-\d\d-\d\d"))
        expect(rows.first).to_be_visible()
        assert rows.count() >= 2  # someone else's set too
        page.get_by_text("My ads").click()
        wait_idle(page)
        expect(rows).to_have_count(1)

        # A tampered session cookie is refused: back to the sign-in page.
        cookie = next(c for c in context.cookies() if c["name"] == "_streamlit_user")
        value = cookie["value"]
        forged = value[:-6] + ("AAAAAA" if not value.endswith("AAAAAA") else "BBBBBB")
        context.add_cookies([{**cookie, "value": forged}])
        page.goto(url)
        expect(sign_in_button).to_be_visible()
        wait_idle(page)
        expect(chat).to_have_count(0)
        app.shot("05-tampered.png")

        # The genuine cookie still works; signing out ends the session for good.
        context.add_cookies([cookie])
        page.goto(url)
        app.settle("Signed in as ana@brand.com · creator")
        sign_out()
        page.goto(url)
        expect(sign_in_button).to_be_visible()
        wait_idle(page)
        expect(chat).to_have_count(0)
        assert not [c for c in context.cookies() if c["name"] == "_streamlit_user"]
        app_log = log.read_text()

    # The Dagster events name the creator; no secret is in a log, a sidecar or an event.
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("ad_creatives")), limit=50
        ).records
    ours = [
        r.asset_materialization.metadata
        for r in records
        if r.asset_materialization.metadata["path"].value in made
    ]
    assert len(ours) == len(made)
    for meta in ours:
        assert meta["user_subject"].value == "sub-creator-2"
        assert meta["user_email"].value == "ana@brand.com"
        assert cookie_secret not in str(meta) and client_secret not in str(meta)
    for text in (app_log, json.dumps(list(made.values()))):
        for secret in (cookie_secret, client_secret, value, TOKEN):
            assert secret not in text

    # The MLflow trace of the generation names the creator too (written by the app process).
    import mlflow

    mlflow.set_tracking_uri(home.settings().tracing.tracking_uri)
    deadline = time.monotonic() + 60
    while True:
        traces = mlflow.search_traces(
            locations=[mlflow.get_experiment_by_name("adrag").experiment_id],
            return_type="list",
            max_results=50,
        )
        attrs = [s.attributes for t in traces for s in t.data.spans if s.name == "make_creatives"]
        if any(a.get("user_subject") == "sub-creator-2" for a in attrs):
            break
        assert time.monotonic() < deadline, attrs
        time.sleep(0.5)
