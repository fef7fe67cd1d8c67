"""`make demo`: a fresh ADRAG_HOME, photos in its volume, one ingest, a search, one ad.

Photos come from ``--images`` (or ``ADRAG_DEMO_IMAGES``: a folder copied as is under
``raw/``, with any labels.csv or sidecars) or, without it, a small set of drawings made here.
The encoder is ``ADRAG_ENCODER`` (default: a pretrained ViT-B-32); when its weights cannot be
had, the demo says so and goes on with the same architecture with random weights, labelled as
such.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import sys
from pathlib import Path

import click
from PIL import Image, ImageDraw

from adrag_assets.settings import OFFLINE_ENCODER, SettingsError, load_settings
from adrag_assets.volume import BRAND

MARKER = ".adrag-demo-home"  # only a folder carrying this is wiped on the next demo
# Dogs first: the demo's ad is for dog owners, from the first of these with a good match.
QUERIES = ["a beagle on a lawn", "a dog running on the beach", "a cat sleeping on a sofa"]
SEGMENT = "outdoor-loving dog owners"
SCENES = {
    "beach": ((135, 200, 235), (235, 215, 160)),
    "park": ((150, 205, 245), (80, 160, 70)),
    "city": ((190, 190, 200), (110, 110, 120)),
    "home": ((240, 225, 200), (150, 100, 70)),
}
PETS = {"dog": ((150, 100, 50), "floppy"), "cat": ((90, 90, 90), "pointed")}


def draw_pet(species: str, scene: str, rng: random.Random, size: int = 320) -> Image.Image:
    """A simple drawing of a pet in a scene: enough to exercise the pipeline, not a photo."""
    sky, ground = SCENES[scene]
    im = Image.new("RGB", (size, size), sky)
    d = ImageDraw.Draw(im)
    d.rectangle([0, size * 0.6, size, size], fill=ground)
    fur, ears = PETS[species]
    fur = tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in fur)
    cx, cy, r = size * rng.uniform(0.35, 0.65), size * 0.55, size * rng.uniform(0.14, 0.2)
    d.ellipse([cx - r * 1.6, cy, cx + r * 1.6, cy + r * 1.5], fill=fur)  # body
    d.ellipse([cx - r, cy - r * 1.4, cx + r, cy + r * 0.5], fill=fur)  # head
    for side in (-1, 1):
        if ears == "pointed":
            d.polygon(
                [
                    (cx + side * r * 0.9, cy - r * 0.9),
                    (cx + side * r * 0.3, cy - r * 1.3),
                    (cx + side * r * 0.8, cy - r * 2.0),
                ],
                fill=fur,
            )
        else:
            d.ellipse(
                [
                    cx + side * r * 0.7 - r * 0.35,
                    cy - r * 1.1,
                    cx + side * r * 0.7 + r * 0.35,
                    cy - r * 0.1,
                ],
                fill=tuple(c // 2 for c in fur),
            )
        d.ellipse(
            [cx + side * r * 0.4 - 5, cy - r * 0.7 - 5, cx + side * r * 0.4 + 5, cy - r * 0.7 + 5],
            fill=(20, 20, 20),
        )
    return im


def draw_set(raw: Path, n_each: int = 3) -> int:
    raw.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    rows = []
    for species in PETS:
        for scene in SCENES:
            for i in range(n_each):
                name = f"{species}_{scene}_{i}.jpg"
                draw_pet(species, scene, rng).save(raw / name, quality=90)
                rows.append({"file": name, "species": species, "scene": scene})
    with (raw / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "species", "scene"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def draw_brand(path: Path) -> None:
    """A stand-in product shot (a bottle on a transparent background) for the demo's ad."""
    im = Image.new("RGBA", (240, 360), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((50, 60, 190, 340), radius=24, fill=(20, 120, 200))
    d.rectangle((95, 20, 145, 60), fill=(20, 120, 200))
    d.text((92, 190), "ADRAG", fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "PNG")


def fresh_home(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists():
            sys.exit(f"{home} exists and was not made by the demo: set ADRAG_HOME to a new folder")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `make demo`; removed by the next one\n")


def _first_match(queries: list[str]) -> str:
    """The first query with a good match (the relevance floor leaves some with none, e.g. a
    beagle among the drawings); the last one if none has."""
    from adrag_app.cli.errors import quiet_mlflow_logs
    from adrag_app.service.ad_service import retrieve

    quiet_mlflow_logs()
    return next((q for q in queries if retrieve(q, 1)), queries[-1])


@click.command()
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="ADRAG_DEMO_IMAGES",
    show_envvar=True,
    help="A folder of photos to copy under raw/ (default: the demo draws a few).",
)
def main(images: Path | None) -> None:
    """A fresh ADRAG_HOME, photos in its volume, one ingest, a few searches, one ad."""
    from adrag_app import cli
    from adrag_assets.embeddings.encoder import load_encoder
    from adrag_assets.embeddings.spec import EncoderError

    try:
        settings = load_settings()
    except SettingsError as e:
        raise click.ClickException("; ".join(e.problems)) from None
    fresh_home(settings.home)
    if images:
        shutil.copytree(images.expanduser(), settings.raw_dir)
        click.echo(f"demo photos: copied {images} to {settings.raw_dir}")
    else:
        n = draw_set(settings.raw_dir / "drawn")
        click.echo(
            f"demo photos: no --images (ADRAG_DEMO_IMAGES) given, so the demo drew {n} simple pet "
            f"pictures itself (drawings, not photos) under {settings.raw_dir / 'drawn'}"
        )
    encoder = settings.encoder
    try:
        load_encoder(encoder, settings.precision, settings.device)
    except EncoderError as e:
        click.secho(f"\n{e}\n", fg="yellow")
        click.secho(
            f"The demo goes on OFFLINE with {OFFLINE_ENCODER}: the same architecture with "
            f"fixed RANDOM weights. The pipeline is real; the search results are NOT semantic.\n",
            fg="yellow",
            bold=True,
        )
        # The commands below load their settings from the environment, as they would by hand.
        os.environ["ADRAG_ENCODER"] = OFFLINE_ENCODER
        encoder = OFFLINE_ENCODER
    cli.main(["ingest"], standalone_mode=False)
    cli.main(["status"], standalone_mode=False)
    for q in QUERIES:
        click.echo(f'\nadrag search "{q}"')
        cli.main(["search", q, "-k", "3"], standalone_mode=False)
    brand = settings.volume / BRAND
    if not brand.is_dir():
        draw_brand(brand / "demo-bottle.png")
        click.echo(f"\nbrand image: drew a stand-in product bottle at {brand / 'demo-bottle.png'}")
    pack = settings.home / "demo-creatives.zip"
    brief = _first_match(QUERIES)
    click.echo(
        f'\nadrag generate "{brief}" --segment "{SEGMENT}" --placement all --variants 1 '
        f"--zip {pack}"
    )
    cli.main(
        [
            "generate",
            brief,
            "--segment",
            SEGMENT,
            "--placement",
            "all",
            "--variants",
            "1",
            "--zip",
            str(pack),
        ],
        standalone_mode=False,
    )
    click.echo(
        "\nThe creatives above are PNGs in the volume, one per placement (Meta feed 4:5 and 1:1, "
        "Stories 9:16, Google Display 1.91:1 and square), each with a .json sidecar (texts, "
        "contrast, boxes, source photo, generator), and a contact sheet beside them; the zip "
        f"holds the set with a manifest.csv ({pack}). In the Dagster UI each is a "
        "materialization of the asset ad_creatives (Assets -> ad_creatives), downstream of "
        "image_index."
    )
    click.echo(
        f"\nEverything lives under {settings.home}. Same commands by hand:\n"
        f"  export ADRAG_HOME={settings.home} ADRAG_ENCODER={encoder}\n"
        f'  .venv/bin/adrag status; .venv/bin/adrag search "a cat" -k 5\n'
        f"  ADRAG_HOME={settings.home} make dev   # the Dagster UI on http://127.0.0.1:3000"
    )


if __name__ == "__main__":
    main()
