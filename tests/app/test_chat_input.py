"""The check every chat message passes first, and traces that survive undecodable text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from adrag_app.agent.agent import Agent, AgentState
from adrag_app.agent.chat_input import MessageRefused, check_message, shortened
from adrag_app.cli.chat import plain_text, read_lines
from adrag_app.planner.planner import BuiltinPlanner
from adrag_assets import tracing
from tests.support.app_home import forget_mlflow
from tests.support.fake_tool import FakeTool


def test_a_plain_message_passes_as_it_is() -> None:
    text = "families with kids 👨‍👩‍👧\n(a pasted brief)\twith tabs"  # ZWJ emoji are text
    assert check_message(text, 2000) == text
    assert check_message(text.encode(), 2000) == text
    assert check_message("é" * 2000, 2000) == "é" * 2000


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("a" * 2001, "longer (2,001 characters) than the 2,000"),
        (b"a" * 8001, "longer than the 2,000"),
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (b"caf\xe9", "not UTF-8 text"),
        ("caf\udce9", "not UTF-8 text"),  # the same bytes read with surrogateescape
        ("yes\x00", "control character (U+0000)"),
        ("yes\x1b[A", "control character (U+001B)"),
        ("next\x7f", "control character (U+007F)"),
    ],
)
def test_a_bad_message_is_refused_in_one_sentence(message: str | bytes, reason: str) -> None:
    with pytest.raises(MessageRefused) as refused:
        check_message(message, 2000)
    said = str(refused.value)
    assert reason in said and said.startswith("That message was not read")
    assert "\n" not in said and len(said) < 200


def test_a_huge_line_is_read_to_its_end_without_keeping_it() -> None:
    stream = io.BytesIO(b"retirees\n" + b"x" * 5_000_000 + b"\nyes\r\nno")
    lines = list(read_lines(stream, 100))
    assert [len(line) for line in lines] == [8, 401, 3, 2]
    with pytest.raises(MessageRefused, match="longer than the 100"):
        check_message(lines[1], 100)
    assert shortened("x" * 500) == "x" * 200 + "…"


def test_replies_are_plain_text_in_a_terminal() -> None:
    text = (
        "Photo **1 of 3** for *a pug on a sofa* (the best match). Your ad is ready. Download it "
        "below, or say *not quite* to try the next photo, or `adrag ingest`."
    )
    plain = plain_text(text.replace("it \nbelow", "it below"), "/v/ads/x_1.png")
    assert "*" not in plain and "`" not in plain and "below" not in plain
    assert "Photo 1 of 3 for a pug on a sofa" in plain
    assert "It is saved to /v/ads/x_1.png. Say not quite" in plain
    assert plain_text("The ad is ready: download it below.", "/a.png") == (
        "The ad is ready: saved to /a.png."
    )
    assert plain_text("2 * 3 and raw/pets/Persian_14.jpg") == "2 * 3 and raw/pets/Persian_14.jpg"


def test_undecodable_text_is_traced_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Text with lone surrogates (bytes read with surrogateescape) reaching a span: the trace is
    stored, the text replaced, and MLflow's exporter logs nothing."""
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("ADRAG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("ADRAG_TRACING", raising=False)
    agent = Agent(FakeTool(tmp_path / "volume"), BuiltinPlanner())
    try:
        state = AgentState()
        for message in ("retirees", "a pug \udcff\udcfe on a sofa", "ok \udc80"):
            state, _ = agent.handle(state, message)
        tracing.flush()
        traces = mlflow.search_traces(return_type="list")
        assert len(traces) == 3
        inputs = [str(t.data.spans[0].inputs) for t in traces]
        assert any("a pug" in i and "\ufffd" in i for i in inputs), inputs
    finally:
        forget_mlflow()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "surrogates not allowed" not in err, err[-3000:]
