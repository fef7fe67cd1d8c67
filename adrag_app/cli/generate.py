"""``adrag generate``: one ad from the command line, through the same service the app calls.

Register it on the ``adrag`` group with ``main.add_command(generate)``; it also runs on its
own (``generate()``), reading the same ``ADRAG_*`` variables.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import click

from adrag_app.cli.errors import Command, Text, fail, quiet_milvus_logs

if TYPE_CHECKING:
    from adrag_assets.settings import Settings

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
    help="Which of the top-3 photos to use (0 = best match).",
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
    "--headline", type=TEXT, default=None, help="Words on the ad (default: from the segment)."
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
    help="Campaign creatives for these placements (a name, a comma list, or all): "
    "meta_feed, meta_square, story, google_landscape, google_square, or the volume's own "
    "(campaigns/placements.yaml). With it (or --variants) the command writes a set of "
    "creatives instead of one ad.",
)
@click.option(
    "--variants",
    type=click.IntRange(1, 6),
    default=None,
    help="Creatives: how many variants (photo i of the ranking is variant i). Default 3.",
)
@click.option(
    "--zip",
    "zip_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Creatives: also write the set as a zip with a manifest.csv here.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: one object, or a list of creatives."
)
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
    variants: int | None,
    zip_path: str | None,
    as_json: bool,
) -> None:
    """Compose an ad from the best photos for DESCRIPTION and a brand image.

    Retrieves the top-3 photos, generates the ad from the one at --seed-index (Replicate
    when REPLICATE_API_TOKEN is set, else the offline compositor), writes it with a JSON
    sidecar under ads/ in the volume, records it in Dagster and prints its path.

    With --placement and/or --variants: campaign creatives, one per variant x placement
    (copy written for --segment, never quoting it; --headline wins), a contact sheet, one
    path per line (--json: a list of creatives; --zip: the set as a zip with a manifest).
    """
    # Imported here: `adrag --help` must not pay for Dagster, torch and MLflow.
    from adrag_app.creative.brandkit import BrandKitError
    from adrag_app.creative.copywriter import BannedWords
    from adrag_app.creative.placements import PlacementError
    from adrag_app.generators import GenerationError
    from adrag_app.service.ad_service import AdServiceError, generate_ad
    from adrag_assets.embeddings.spec import RANDOM_PREFIX, RANDOM_WARNING, EncoderError
    from adrag_assets.index.milvus import MilvusError, MilvusUnavailable
    from adrag_assets.index.search import IndexNotReady
    from adrag_assets.settings import load_settings
    from adrag_assets.volume import open_volume

    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    if not obj.get("verbose"):
        # MLflow logs its store setup at INFO on its own handler, and sets that level when it
        # is imported (later, lazily), from this variable; keep stderr to real problems.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    quiet_milvus_logs(bool(obj.get("verbose")))
    creatives_wanted = placement is not None or variants is not None or zip_path is not None
    try:
        settings = obj.get("settings") or load_settings()
        if creatives_wanted:
            _creatives(
                description,
                placement or "all",
                variants or 3,
                brand=brand,
                segment=segment,
                user=_default_user() if user is None else user,
                filters=_parse_filters(filters),
                headline=headline,
                settings=settings,
                zip_path=zip_path,
                as_json=as_json,
            )
            return
        result = generate_ad(
            description,
            seed_index,
            brand=brand,
            segment=segment,
            user=_default_user() if user is None else user,
            filters=_parse_filters(filters),
            headline=headline,
            settings=settings,
        )
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

    meta = result.metadata
    if meta["encoder_id"].startswith(RANDOM_PREFIX):
        click.secho(
            f"note: encoder {meta['encoder_id']} has {RANDOM_WARNING}", fg="yellow", err=True
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": result.path,
                    "sidecar": result.sidecar,
                    "file": open_volume(settings.volume_uri).display(result.path),
                    "seed_path": meta["seed_path"],
                    "seed_image_id": meta["seed_image_id"],
                    "brand_path": meta["brand_path"],
                    "generator": meta["generator"],
                    "model": meta["model"],
                    "encoder_id": meta["encoder_id"],
                },
                indent=2,
            )
        )
        return
    # The full path, so `open "$(adrag generate ...)"` works from anywhere.
    click.echo(open_volume(settings.volume_uri).display(result.path))


def _creatives(
    description: str,
    placement: str,
    variants: int,
    *,
    zip_path: str | None,
    as_json: bool,
    settings: Settings,
    **options: Any,
) -> None:
    import tempfile
    from pathlib import Path

    from adrag_app.service.creatives import export_zip, make_creatives
    from adrag_assets.volume import open_volume

    creatives = make_creatives(description, placement, variants, settings=settings, **options)
    if zip_path:
        data = export_zip(creatives, settings)
        target = Path(zip_path)
        # Atomic: a reader never sees half a zip, a failure leaves none.
        with tempfile.NamedTemporaryFile(dir=target.parent or ".", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
        if not as_json:
            click.echo(f"zip: {target}", err=True)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in creatives], indent=2, ensure_ascii=False))
        return
    store = open_volume(settings.volume_uri)
    for c in creatives:
        click.echo(store.display(c.path))
