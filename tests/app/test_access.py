"""Who may do what: the access file, roles from claims, the tool's own refusal, and the
durable daily count of paid generations (a real Delta table, two real processes)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from datetime import date
from pathlib import Path

import pytest

from adrag_app.access.roles import (
    AccessFileError,
    NotAllowed,
    Person,
    Role,
    load_access,
    parse_access,
    person_for,
    require,
    role_from_claim,
)
from adrag_app.access.spending import LimitReached, Spending
from adrag_app.agent.agent import SHOWING, Agent, AgentState
from adrag_app.cli.stack import StackError, check_exposure
from adrag_app.service.tool import ServiceTool, ToolContext
from adrag_assets.settings import load_settings
from tests.support.cli import ADRAG
from tests.support.spending_worker import reserve_many

ACCESS = """
admin: [lea@brand.com]
creator: [ana@brand.com, "*@studio.brand.com"]
viewer: ["*@brand.com", "*@studio.brand.com"]
"""


def test_the_highest_matching_role_wins_and_no_match_means_no_entry() -> None:
    rules = parse_access(ACCESS, "access.yaml")
    assert rules.role_for("lea@brand.com") is Role.ADMIN  # also matches *@brand.com
    assert rules.role_for("Ana@Brand.com") is Role.CREATOR
    assert rules.role_for("max@studio.brand.com") is Role.CREATOR  # creator beats viewer
    assert rules.role_for("bob@brand.com") is Role.VIEWER
    assert rules.role_for("eve@brand.com.evil.org") is None
    assert rules.role_for("eve@notbrand.com") is None
    assert rules.role_for("not an email") is None
    claims = {"sub": "u-1", "email": "bob@brand.com"}
    assert person_for(claims, rules=rules) == Person("u-1", "bob@brand.com", Role.VIEWER)
    assert person_for({"sub": "u-2", "email": "eve@else.org"}, rules=rules) is None
    assert person_for({"sub": "u-3"}, rules=rules) is None  # no email, no role
    assert person_for(claims) is None  # neither a claim nor a file: nobody gets in


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("creator: [ana@brand.com", "not valid YAML"),
        ("- ana@brand.com", "expected a mapping of roles"),
        ("owner: [ana@brand.com]", "unknown role 'owner'"),
        ("viewer: ana@brand.com", "viewer must be a list of emails"),
        ("viewer: ['*']", "'*' is neither an email nor *@domain"),
        ("creator: ['ana@*.com']", "is neither an email nor *@domain"),
        ("viewer: [42]", "42 is neither"),
    ],
)
def test_a_bad_access_file_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, reason: str
) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "access.yaml").write_text(text)
    with pytest.raises(AccessFileError, match="access.yaml") as e:
        load_access(tmp_path)
    assert reason in str(e.value)


def test_the_access_file_is_read_from_the_volume(tmp_path: Path) -> None:
    assert load_access(tmp_path) is None
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "access.yaml").write_text(ACCESS)
    assert load_access(tmp_path).role_for("ana@brand.com") is Role.CREATOR


def test_roles_from_a_claim() -> None:
    assert role_from_claim(["viewer", "creator", "other"]) is Role.CREATOR
    assert role_from_claim("viewer admin") is Role.ADMIN
    assert role_from_claim("Creator") is Role.CREATOR
    assert role_from_claim(["marketing"]) is None
    assert role_from_claim(None) is None
    claims = {"sub": "u-9", "email": "x@y.com", "groups": ["viewer"]}
    assert person_for(claims, claim="groups").role is Role.VIEWER
    assert person_for({**claims, "groups": []}, claim="groups") is None


def test_a_refusal_is_one_sentence_naming_the_role_needed() -> None:
    with pytest.raises(NotAllowed) as e:
        require(Role.VIEWER, "generate")
    assert str(e.value) == "Making or changing an ad needs the creator role."
    with pytest.raises(NotAllowed, match="needs the admin role"):
        require("creator", "brand")
    with pytest.raises(NotAllowed, match="^Archiving duplicate photos needs the admin role"):
        require(Role.CREATOR, "review")
    require(Role.ADMIN, "review")
    with pytest.raises(NotAllowed):
        require("someone", "generate")  # an unknown role is no role
    require(Role.CREATOR, "generate")
    require(Role.ADMIN, "generate")
    require(None, "brand")  # no sign-in (laptop mode): nothing is refused
    require("", "generate")


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADRAG_TRACING", "off")


def _viewer_context() -> ToolContext:
    return ToolContext(
        segment="pet owners", user="bob@brand.com", subject="u-1", email="bob@brand.com",
        role="viewer",
    )  # fmt: skip


def test_the_tool_refuses_a_viewer_whatever_asks_it(tmp_path: Path) -> None:
    settings = load_settings({"ADRAG_HOME": str(tmp_path / "home"), "ADRAG_GENERATOR": "local"})
    tool = ServiceTool(settings)
    # A forged call (no button, straight to the tool): refused before any search or write.
    with pytest.raises(NotAllowed, match="needs the creator role"):
        tool({"description": "a beagle", "seed_index": 0, "generate": True}, _viewer_context())
    with pytest.raises(NotAllowed, match="needs the creator role"):
        tool.edit_ad({"path": "ads/x.png"}, {"tone": ["warmer"]}, _viewer_context())
    # The agent says it in one sentence, and nothing was saved.
    viewer = Person("u-1", "bob@brand.com", Role.VIEWER)
    state = AgentState(
        phase=SHOWING,
        segment="pet owners",
        proposal={"description": "a beagle", "reason": "", "filters": {}, "source": "marketer"},
        candidates=[{"rank": 0, "path": "raw/a.jpg", "score": 0.5, "image_id": "a" * 64}],
    )
    after, reply = Agent(tool, user="ignored", person=viewer).handle(state, "yes")
    assert reply.text == "Making or changing an ad needs the creator role."
    assert reply.tool_calls[0].context["role"] == "viewer"
    assert "needs the creator role" in reply.tool_calls[0].error
    assert after.phase == SHOWING and after.ad is None
    assert not (settings.volume / "ads").exists()


# -- the daily count --------------------------------------------------------------------------


def test_the_count_survives_a_reopen_and_refuses_over_the_limits(tmp_path: Path) -> None:
    first = Spending(tmp_path, per_user=3, per_brand=4)
    first.reserve("ana", 2)
    again = Spending(tmp_path, per_user=3, per_brand=4)  # a restart, or another process
    assert again.used("ana") == (2, 2)
    with pytest.raises(LimitReached, match="your 3 paid generations for today"):
        again.reserve("ana", 2)
    assert again.used("ana") == (2, 2)  # the refused reservation left nothing
    kept = again.reserve("ana", 1)
    with pytest.raises(LimitReached, match="The brand has used its 4 paid generations"):
        again.reserve("bob", 2)
    again.reserve("bob", 1)
    assert again.used("bob") == (1, 4)
    again.give_back(kept)  # a generation that failed before anything was spent
    assert again.used("ana") == (2, 3)
    # Another day starts from zero; without limits nothing is counted at all.
    assert again.used("ana", date(2000, 1, 1)) == (0, 0)
    Spending(tmp_path / "free").reserve("ana", 5)
    assert not (tmp_path / "free").exists()


def test_two_processes_reserving_at_once_never_exceed_the_limit(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=reserve_many, args=(str(tmp_path), "ana", 5, 4, start, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    granted = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(granted) == 5, granted
    assert Spending(tmp_path).used("ana") == (5, 5)


# -- adrag up -----------------------------------------------------------------------------------


def test_adrag_up_will_not_serve_the_app_beyond_this_machine_without_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # no ~/.streamlit/secrets.toml
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(StackError, match="listen on 0.0.0.0 without sign-in") as e:
        check_exposure("0.0.0.0", False, cwd=work)
    assert "--insecure-no-auth" in str(e.value)
    check_exposure("127.0.0.1", False, cwd=work)
    check_exposure("0.0.0.0", True, cwd=work)
    (work / ".streamlit").mkdir()
    (work / ".streamlit" / "secrets.toml").write_text('[auth]\nclient_id = "x"\n')
    check_exposure("0.0.0.0", False, cwd=work)
    # The command says why, and starts nothing.
    home = tmp_path / "home"
    done = subprocess.run(
        [ADRAG, "up", "--app-address", "0.0.0.0"],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path / "user"), "ADRAG_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "without sign-in" in done.stderr and "--insecure-no-auth" in done.stderr
    assert not (home / "logs").exists()
