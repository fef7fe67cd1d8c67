"""``adrag chat``: the marketer's agent in a terminal, one message per line of stdin.

The same :class:`~adrag_app.agent.agent.Agent` and tool as the app, so a conversation can be
scripted (``printf 'retirees\\nyes\\nno\\nyes\\n' | adrag chat --json``) and tested end to end.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from adrag_app.agent.agent import Reply


def reply_json(reply: Reply) -> dict[str, Any]:
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
        "text": reply.text,
        "candidate": candidate,
        "ad": {"path": reply.ad["path"]} if reply.ad else None,
        "notes": reply.notes,
        "error": reply.error,
    }


@click.command()
@click.option("--segment", default="", help="Start the conversation on this audience segment.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per reply.")
@click.pass_context
def chat(ctx: click.Context, segment: str, as_json: bool) -> None:
    """Talk to the ad agent: one message per line on stdin, until end of input."""
    # Imported here: the agent's service loads torch, Dagster and MLflow, which the other
    # commands (and `adrag --help`) must not pay for.
    from adrag_app.agent.agent import GREETING, AgentState
    from adrag_app.agent.llm_agent import make_agent
    from adrag_app.planner.planner import make_planner
    from adrag_app.planner.segments import SegmentsFileError, load_catalog
    from adrag_app.service.tool import ServiceTool

    settings = ctx.obj["settings"]
    tool = ServiceTool(settings)
    try:
        catalog = load_catalog(settings.volume_uri)
    except SegmentsFileError as e:
        raise click.ClickException(str(e)) from e
    planner = make_planner(settings.llm, catalog=catalog, vocabulary=tool.label_counts)
    agent = make_agent(tool, planner, settings.llm, user=settings.app.user)
    state = AgentState()

    def emit(reply: Reply) -> None:
        if as_json:
            click.echo(json.dumps(reply_json(reply), ensure_ascii=False))
        else:
            click.echo(f"adrag> {reply.text}")
            for note in reply.notes:
                click.echo(f"  note: {note}")
            if reply.candidate:
                click.echo(f"  photo: {reply.candidate['path']}")
            if reply.ad:
                click.echo(f"  ad: {reply.ad['path']}")
        sys.stdout.flush()  # a driving process reads each reply as it comes

    if not as_json:
        click.echo(f"adrag> {GREETING}")
    if segment:
        state, reply = agent.set_segment(state, segment)
        emit(reply)
    for line in sys.stdin:
        if line.strip():
            state, reply = agent.handle(state, line.strip())
            emit(reply)
