"""Text in photos: OCR of the renditions (photo_text) reaches search through BM25.

The offline encoder's dense scores are noise: a product shot found by the word on its label
is found by the OCR words alone. OCR is off for the rest of the suite (tests/conftest.py);
here it reads nine photos.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont

from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.index import image_index
from adrag_assets.defs.photo_text import photo_text
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.images.ocr import OCR_VERSION, read_text
from adrag_assets.index.search import search
from adrag_assets.settings import load_settings
from adrag_assets.tables import PHOTO_TEXT
from tests.support.data import copy_few_pets
from tests.support.helpers import index_for, tables_for

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
ASSETS = [images, photo_text, image_embeddings, image_index]


def draw_bottle(path: Path, word: str, color: tuple[int, int, int]) -> None:
    """A product shot: a bottle on a table, black ``word`` on its white label."""
    image = Image.new("RGB", (480, 480), (222, 210, 190))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((120, 70, 360, 450), radius=30, fill=color)
    draw.rectangle((200, 20, 280, 70), fill=color)
    draw.rectangle((130, 200, 350, 290), fill="white")
    font = ImageFont.truetype(FONT, 38)
    draw.text((240, 245), word, fill="black", font=font, anchor="mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=92)


def materialize(instance: dg.DagsterInstance, selection: list | None = None) -> dict[str, dict]:
    result = dg.materialize(
        ASSETS,
        selection=selection,
        resources=resources_from_settings(load_settings()),
        instance=instance,
    )
    assert result.success
    return {
        e.event_specific_data.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.event_specific_data.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


def test_words_on_a_label_find_the_photo(settings, instance, monkeypatch):
    raw = settings.raw_dir
    copy_few_pets(raw, ("beagle",))
    draw_bottle(raw / "products" / "purrfect.jpg", "PURRFECT", (40, 110, 60))
    draw_bottle(raw / "products" / "woofday.jpg", "WOOFDAY", (150, 40, 40))

    # A library indexed before OCR: no words in the index yet.
    off = materialize(instance)
    assert off["photo_text"]["mode"] == "off" and off["photo_text"]["read"] == 0

    # OCR turned on: photo_text reads every photo, and the index re-upserts the photos whose
    # words changed (photo_text's change feed) without new vectors.
    monkeypatch.setenv("ADRAG_OCR", "on")
    on = materialize(instance, [photo_text.key, image_index.key])
    assert on["photo_text"]["read"] == 10 and on["photo_text"]["with_text"] >= 2
    assert on["image_index"]["upserted"] >= 2 and on["image_index"]["mode"] == "incremental"
    t = tables_for(settings)
    rows = {
        r["image_id"]: r["text"] for r in t.read("photo_text", ["image_id", "text"]).to_pylist()
    }
    assert len(rows) == 10 and any("PURRFECT" in text for text in rows.values())

    index = index_for(settings)
    try:
        hits = search(index, "purrfect", k=3)
        assert hits[0].path == "raw/products/purrfect.jpg", [h.path for h in hits]
        assert search(index, "woofday", k=1)[0].path == "raw/products/woofday.jpg"

        # Words that change later (as a new OCR version would read them) reach search through
        # photo_text's change feed: only that photo is upserted again.
        quiet = next(i for i, text in rows.items() if not text)
        row = {"image_id": quiet, "text": "ZOOMIES", "boxes": 1, "ocr_version": OCR_VERSION}
        row["read_at"] = datetime.now(UTC)
        t.upsert("photo_text", pa.Table.from_pylist([row], PHOTO_TEXT), ["image_id"])
        assert materialize(instance, [image_index.key])["image_index"]["upserted"] == 1
        assert search(index, "zoomies", k=1)[0].image_id == quiet

        # Incremental: nothing new, nothing read again. A deleted photo's row follows it.
        assert materialize(instance)["photo_text"]["read"] == 0
        (raw / "products" / "purrfect.jpg").unlink()
        gone = materialize(instance)
        assert gone["photo_text"]["deleted"] == 1 and gone["photo_text"]["dagster/row_count"] == 9
        assert "raw/products/purrfect.jpg" not in [h.path for h in search(index, "purrfect", k=3)]
    finally:
        index.close()


def test_read_text_keeps_words_not_noise():
    image = Image.new("RGB", (400, 160), "white")
    ImageDraw.Draw(image).text(
        (200, 80), "Fresh Catnip", fill="black", font=ImageFont.truetype(FONT, 40), anchor="mm"
    )
    buf = io.BytesIO()
    image.save(buf, "PNG")
    text, lines = read_text(buf.getvalue())
    assert text.lower().split() == ["fresh", "catnip"] and lines == 1
    blank = io.BytesIO()
    Image.new("RGB", (300, 300), (90, 120, 90)).save(blank, "PNG")
    assert read_text(blank.getvalue()) == ("", 0)
