"""``adrag generate``: a creative set from the command line, through the service the app calls.

Register it on the ``adrag`` group with ``main.add_command(generate)``; it also runs on its
own (``generate()``), reading the same ``ADRAG_*`` variables.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from pathlib import Path

import click

from adrag_app.cli.errors import Command, Text, fail, quiet_milvus_logs, quiet_mlflow_logs

TEXT = Text()


def _parse_filters(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--filter")
        out[key.strip()] = value.strip()
    return out


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers): the ad is just not attributed
        return ""


@click.command(cls=Command)
@click.argument("description", type=Text(blank="describe the photo you are looking for"))
@click.option(
    "--seed-index",
    type=click.IntRange(0, 2),
    default=0,
    show_default=True,
    help="Which of the top-3 photos to start from (0 = best match).",
)
@click.option(
    "--brand",
    type=TEXT,
    metavar="PATH",
    default=None,
    help="Brand image inside the volume's brand/ folder (relative to the volume, or "
    "absolute). Default: the first one by name.",
)
@click.option("--segment", type=TEXT, default="", help="The audience segment the ad is for.")
@click.option(
    "--filter",
    "filters",
    type=TEXT,
    metavar="KEY=VALUE",
    multiple=True,
    help="Only photos with this label, e.g. species=dog (repeatable).",
)
@click.option(
    "--headline",
    type=TEXT,
    default=None,
    help="Words on the ad (default: copy written for the photo and the segment).",
)
@click.option(
    "--user", type=TEXT, default=None, help="Who asked for the ad (default: the login name)."
)
@click.option(
    "--placement",
    "placement",
    type=TEXT,
    metavar="NAME|all",
    default=None,
    help="Placements (a name, a comma list, or all): meta_feed, meta_square, story, "
    "google_landscape, google_square, or the volume's own (campaigns/placements.yaml). "
    "Default: meta_feed,story, as in the chat app.",
)
@click.option(
    "--variants",
    type=click.IntRange(1, 6),
    default=1,
    show_default=True,
    help="How many variants: photos of the ranking from --seed-index on, one each.",
)
@click.option(
    "--zip",
    "zip_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the set as a zip with a manifest.csv here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the creatives as a JSON list.")
@click.pass_context
def generate(
    ctx: click.Context,
    description: str,
    seed_index: int,
    brand: str | None,
    segment: str,
    filters: tuple[str, ...],
    headline: str | None,
    user: str | None,
    placement: str | None,
    variants: int,
    zip_path: str | None,
    as_json: bool,
) -> None:
    """Make the creatives for DESCRIPTION: the best photos, a brand image, written copy.

    Retrieves the top photos and makes one creative per variant x placement from the photo
    at --seed-index on (Replicate when REPLICATE_API_TOKEN is set, else the offline
    compositor): copy written for --segment, never quoting it (--headline wins), each
    creative a PNG with a JSON sidecar under ads/ in the volume and a materialization of
    ad_creatives in Dagster, and a contact sheet. Prints one path per line, the best first
    (--json: a list of creatives; --zip: the set as a zip with a manifest).
    """
    # Imported here: `adrag --help` must not pay for Dagster, torch and MLflow.
    from adrag_app.creative.brandkit import BrandKitError
    from adrag_app.creative.copywriter import BannedWords
    from adrag_app.creative.placements import PlacementError
    from adrag_app.generators import GenerationError
    from adrag_app.service.ad_service import AdServiceError
    from adrag_app.service.creatives import DEFAULT_PLACEMENTS, export_zip, make_creatives
    from adrag_assets.embeddings.spec import RANDOM_PREFIX, RANDOM_WARNING, EncoderError
    from adrag_assets.index.milvus import MilvusError, MilvusUnavailable
    from adrag_assets.index.search import IndexNotReady
    from adrag_assets.settings import load_settings
    from adrag_assets.volume import open_volume

    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    if not obj.get("verbose"):
        quiet_mlflow_logs()
    quiet_milvus_logs(bool(obj.get("verbose")))
    try:
        settings = obj.get("settings") or load_settings()
        creatives = make_creatives(
            description,
            placement or DEFAULT_PLACEMENTS,
            variants,
            seed_index=seed_index,
            brand=brand,
            segment=segment,
            user=_default_user() if user is None else user,
            filters=_parse_filters(filters),
            headline=headline,
            settings=settings,
        )
        if zip_path:
            _write_zip(Path(zip_path), export_zip(creatives, settings))
    except click.ClickException:
        raise
    except MilvusError as e:
        hint = "" if isinstance(e, MilvusUnavailable) else "; `adrag ingest` rebuilds the index"
        fail(f"{e}{hint}")
    except (
        PlacementError,
        BrandKitError,
        BannedWords,
        GenerationError,
        AdServiceError,
        IndexNotReady,
        EncoderError,
        ConnectionError,
        ValueError,
        OSError,
    ) as e:
        fail(str(e))

    encoder_id = creatives[0].metadata["encoder_id"]
    if encoder_id.startswith(RANDOM_PREFIX):
        click.secho(f"note: encoder {encoder_id} has {RANDOM_WARNING}", fg="yellow", err=True)
    store = open_volume(settings.volume_uri)
    if as_json:
        listed = [{**c.as_dict(), "file": store.display(c.path)} for c in creatives]
        click.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        return
    if zip_path:
        click.echo(f"zip: {zip_path}", err=True)
    # Full paths, so `open "$(adrag generate ... | head -1)"` works from anywhere.
    for c in creatives:
        click.echo(store.display(c.path))


def _write_zip(target: Path, data: bytes) -> None:
    # Atomic: a reader never sees half a zip, a failure leaves none.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
