"""``adrag duplicates`` and ``adrag archive``: the duplicate review from a shell."""

from __future__ import annotations

import json

import click

from adrag_app.cli.errors import fail, quiet_milvus_logs
from adrag_assets.settings import Settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def duplicates(ctx: click.Context, as_json: bool) -> None:
    """Near-duplicate groups in the live index, with each photo's id, path and decision."""
    from adrag_app.service.reviews import duplicate_groups
    from adrag_assets.index.milvus import MilvusError, MilvusIndex
    from adrag_assets.index.search import IndexNotReady

    s: Settings = ctx.obj["settings"]
    quiet_milvus_logs(ctx.obj["verbose"])
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    try:
        found = duplicate_groups(s, index)
    except (IndexNotReady, MilvusError) as e:
        fail(str(e))
    finally:
        index.close()
    if as_json:
        out = {
            "threshold": found.threshold,
            "photos": found.photos,
            "groups": [
                [
                    {"image_id": p.image_id, "path": p.path, "decision": p.decision, "by": p.by}
                    for p in g
                ]
                for g in found.groups
            ],
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(
        f"{len(found.groups)} groups of near duplicates among {found.photos} photos "
        f"(cosine >= {found.threshold})"
    )
    for n, group in enumerate(found.groups, 1):
        click.echo(f"group {n}:")
        for p in group:
            mark = f"  [{p.decision} by {p.by or 'unknown'}]" if p.decision else ""
            click.echo(f"  {p.image_id}  {p.path}{mark}")


@click.command()
@click.argument("photos", nargs=-1, required=True)
@click.option("--undo", is_flag=True, help="Restore archived photos to search.")
@click.pass_context
def archive(ctx: click.Context, photos: tuple[str, ...], undo: bool) -> None:
    """Archive PHOTOS (image ids or volume paths): they leave search and generation; their
    files stay in the volume. --undo restores them."""
    from adrag_app.service.reviews import archive as archive_photos
    from adrag_assets.images.reviews import UnknownPhoto

    s: Settings = ctx.obj["settings"]
    try:
        done = archive_photos(s, list(photos), s.app.user, undo=undo)
    except UnknownPhoto as e:
        fail(str(e))
    verb = "restored" if undo else "archived"
    for r in done:
        click.echo(f"{verb} {r.image_id}")
