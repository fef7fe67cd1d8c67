"""``adrag chat``: the marketer's agent in a terminal, one message per line of stdin.

The same :class:`~adrag_app.agent.agent.Agent` and tool as the app, so a conversation can be
scripted (``printf 'retirees\\nyes\\nno\\nyes\\n' | adrag chat --json``) and tested end to end.

A terminal is not the app's page: replies are printed as plain text (the agent writes
Markdown for the page), an ad is "saved to PATH" (the page shows it "below"), and the
libraries' own logs stay off stderr unless ``adrag -v chat``. Each line passes
:func:`~adrag_app.agent.chat_input.check_message` before anything reads it: a line that is too
long or holds control characters gets one sentence back; input that is not UTF-8 text (a
binary file) stops the command with one error line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from adrag_app.agent.chat_input import REFUSED, MessageRefused, check_message
from adrag_app.cli.errors import fail

if TYPE_CHECKING:
    from adrag_app.agent.agent import AgentState, Reply

READS = "`adrag chat` reads text, a message a line"
_BOLD = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
# The page's words for where the ad is, and what a terminal says instead ({path}).
_BELOW = (
    (re.compile(r"\bthe download button below gets it\b"), "it is at {path}"),
    (re.compile(r"\bDownload it below, or say\b"), "It is saved to {path}. Say"),
    (re.compile(r"\bDownload it below\b"), "It is saved to {path}"),
    (re.compile(r"\bdownload it below\b"), "saved to {path}"),
)


def plain_text(text: str, ad_path: str = "") -> str:
    """A reply's text for a terminal: no Markdown marks, and where the ad was saved."""
    text = _CODE.sub(r"\1", _EMPHASIS.sub(r"\1", _BOLD.sub(r"\1", text)))
    if ad_path:
        for pattern, words in _BELOW:
            text = pattern.sub(words.format(path=ad_path), text)
    return text


def reply_json(reply: Reply, text: str | None = None) -> dict[str, Any]:
    """One reply as a JSON-safe object; ``candidate.rank`` counts from 1, as people do."""
    candidate = None
    if reply.candidate:
        candidate = {
            "path": reply.candidate["path"],
            "rank": int(reply.candidate["rank"]) + 1,
            "score": reply.candidate["score"],
        }
    return {
        "intent": reply.intent,
        "phase": reply.phase,
        "text": reply.text if text is None else text,
        "candidate": candidate,
        "ad": (
            {
                "path": reply.ad["path"],
                "version": reply.ad.get("version", 1),
                "parent": reply.ad.get("parent", ""),
                # Every size of the creative set, as `adrag generate --json` names them.
                "creatives": [
                    {
                        k: c.get(k)
                        for k in (
                            "path",
                            "placement",
                            "width",
                            "height",
                            "headline",
                            "version",
                            "parent",
                        )
                    }
                    for c in reply.ad.get("creatives") or ()
                ],
            }
            if reply.ad
            else None
        ),
        "notes": reply.notes,
        "error": reply.error,
    }


def read_lines(stream: BinaryIO, max_chars: int) -> Iterator[bytes]:
    """Each line of ``stream`` without its line break. A line longer than any message may be is
    read to its end but not kept: a huge paste (or a file without line breaks) costs no memory,
    and comes back as a line just over the limit, which the check refuses."""
    cap = 4 * max_chars + 2  # 4 bytes a character at most, and "\r\n"
    while line := stream.readline(cap):
        if len(line) == cap and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
            yield line[: 4 * max_chars + 1]
            continue
        yield line.rstrip(b"\r\n")


def quiet_libraries(verbose: bool) -> None:
    """Without ``-v``, only adrag's own warnings reach stderr: not open_clip's (on the root
    logger), nor MLflow's INFO lines and export warnings (its own logger and handler)."""
    if verbose:
        return
    import mlflow  # noqa: F401  (importing it sets its loggers' levels: set them after)

    logging.getLogger().setLevel(logging.ERROR)
    for ours in ("adrag", "adrag_app", "adrag_assets"):
        logging.getLogger(ours).setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.ERROR)


@click.command()
@click.option("--segment", default="", help="Start the conversation on this audience segment.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per reply.")
@click.pass_context
def chat(ctx: click.Context, segment: str, as_json: bool) -> None:
    """Talk to the ad agent: one message per line on stdin, until end of input."""
    settings = ctx.obj["settings"]
    max_chars = settings.app.max_message_chars
    if segment:
        try:
            segment = check_message(segment, max_chars)
        except MessageRefused as e:
            fail(f"--segment: {e}")
    quiet_libraries(ctx.obj.get("verbose", False))
    # Imported here: the agent's service loads torch, Dagster and MLflow, which the other
    # commands (and `adrag --help`) must not pay for.
    from adrag_app.agent.agent import GREETING, Agent, AgentState, Reply
    from adrag_app.agent.llm_agent import make_agent
    from adrag_app.planner.planner import make_planner
    from adrag_app.planner.segments import SegmentsFileError, load_catalog
    from adrag_app.service.tool import ServiceTool
    from adrag_assets.volume import open_volume

    try:
        catalog = load_catalog(settings.volume_uri)
    except SegmentsFileError as e:
        raise click.ClickException(str(e)) from e
    volume = open_volume(settings.volume_uri)
    state = AgentState()

    @cache
    def agent() -> Agent:
        # Built for the first message that passes the check: refused or binary input never
        # connects to Milvus or a model.
        tool = ServiceTool(settings)
        planner = make_planner(settings.llm, catalog=catalog, vocabulary=tool.label_counts)
        return make_agent(tool, planner, settings.llm, user=settings.app.user)

    def emit(reply: Reply, state: AgentState) -> None:
        ad = (reply.ad or state.ad or {}).get("path", "")
        text = plain_text(reply.text, volume.display(ad) if ad else "")
        if as_json:
            click.echo(json.dumps(reply_json(reply, text), ensure_ascii=False))
        else:
            click.echo(f"adrag> {text}")
            for note in reply.notes:
                click.echo(f"  note: {plain_text(note)}")
            if reply.candidate:
                click.echo(f"  photo: {reply.candidate['path']}")
            if reply.ad:
                click.echo(f"  ad: {reply.ad['path']}")
        sys.stdout.flush()  # a driving process reads each reply as it comes

    if not as_json:
        click.echo(f"adrag> {plain_text(GREETING)}")
    if segment:
        state, reply = agent().set_segment(state, segment)
        emit(reply, state)
    for number, line in enumerate(read_lines(sys.stdin.buffer, max_chars), start=1):
        try:
            message = check_message(line, max_chars).strip()
        except MessageRefused as e:
            if not _is_text(line):
                fail(f"stdin line {number} is not UTF-8 text (binary input?): {READS}")
            emit(Reply(str(e), state.phase, error=REFUSED, intent="refused"), state)
            continue
        if message:
            state, reply = agent().handle(state, message)
            emit(reply, state)


def _is_text(line: bytes) -> bool:
    """Whether ``line`` is text at all: UTF-8 (a line cut at the length limit may end
    mid-character) without NUL bytes, which no typed or pasted text holds but binary does."""
    if b"\x00" in line:
        return False
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(line) - 3 and len(line) > 4
    return True
