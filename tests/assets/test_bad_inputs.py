"""One volume with every kind of bad input we know of, beside good photos, through ONE real
run of images -> image_embeddings -> image_index (Delta, tiny CLIP, Milvus Lite, Dagster),
then a second run that must change nothing (and, last, a third after removing odd files).

Each kind lives in its own folder ``raw/<kind>/`` and says what must come of it: its photo
indexed (maybe with labels), the file rejected with a reason, a label warning naming the
file, or the file ignored (hidden). The run must succeed with every check passing, and every
good photo must be in ``images``, ``image_embeddings`` and the Milvus collection.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import shutil
import socket
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from adrag_assets.defs.photos import pending_changes
from adrag_assets.index.milvus import TEXT_MAX_BYTES, MilvusIndex, labels_text
from adrag_assets.settings import Settings, load_settings
from adrag_assets.volume import open_volume
from adrag_assets.volume.files import MAX_LABEL_CHARS
from tests.support.data import PETS, TEST_ENCODER, pets_images, read_images
from tests.support.helpers import index_for, run_pipeline, tables_for
from tests.support.unreadable import make_unreadable, reads_obey_permissions

PET_PHOTOS = sorted(pets_images().glob("*.jpg"))[:3]

# -- what a kind expects -------------------------------------------------------------------


@dataclass
class Indexed:
    path: str  # relative to raw/<kind>/
    labels: dict | None = None  # the image's labels, exactly, when given


@dataclass
class Rejected:
    path: str  # as stored (relative to raw/<kind>/)
    reason: str  # a part of the reason


@dataclass
class Warned:
    file: str  # the sidecar or csv the warning names (relative to raw/<kind>/)
    text: str  # a part of the warning
    photo: Indexed = field(default_factory=lambda: Indexed("p.png"))


@dataclass
class Ignored:
    path: str


Expect = Indexed | Rejected | Warned | Ignored
KINDS: dict[str, Callable[[Path], list[Expect]]] = {}


def kind(fn: Callable[[Path], list[Expect] | Expect]) -> Callable:
    def build(folder: Path) -> list[Expect]:
        out = fn(folder)
        return out if isinstance(out, list) else [out]

    KINDS[fn.__name__] = build
    return fn


# -- small real pictures, each with its own content (content is identity) -----------------

_seed = iter(range(1, 10_000))


def picture(mode: str = "RGB", size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(next(_seed))
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png() -> bytes:
    return encoded(picture(), "PNG")


def jpeg() -> bytes:
    return encoded(picture(), "JPEG", quality=90)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def sparse(path: Path, size: int) -> None:
    """A file that claims ``size`` bytes without taking the disk space."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


# -- photos that must be rejected ---------------------------------------------------------


@kind
def empty_file(d):
    write(d / "x.jpg", b"")
    return Rejected("x.jpg", "empty file")


@kind
def truncated_jpeg(d):
    data = encoded(picture(size=(200, 160)), "JPEG")
    write(d / "x.jpg", data[: len(data) // 2])
    return Rejected("x.jpg", "cannot decode")


@kind
def png_bad_crc(d):
    data = bytearray(encoded(picture(), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # the IDAT chunk's CRC, pixels untouched
    write(d / "x.png", bytes(data))
    return Rejected("x.png", "checksum")


@kind
def zero_width_png(d):
    write(d / "x.png", png_header_only(0, 10))
    return Rejected("x.png", "not an image")


@kind
def garbage_after_png_magic(d):
    write(d / "x.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return Rejected("x.png", "raw/garbage_after_png_magic/x.png")


@kind
def text_named_jpg(d):
    write(d / "notes.jpg", "this is not a photo\n")
    return Rejected("notes.jpg", "not an image")


@kind
def pdf(d):
    write(d / "doc.pdf", encoded(picture(), "PDF"))
    return Rejected("doc.pdf", "not an image")


@kind
def html(d):
    write(d / "page.jpg", "<!doctype html><html><body><img src=x></body></html>")
    return Rejected("page.jpg", "not an image")


@kind
def svg(d):
    write(d / "logo.svg", '<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>')
    return Rejected("logo.svg", "not an image")


@kind
def decompression_bomb(d):
    write(d / "bomb.png", png_header_only(100_000, 100_000))
    return Rejected("bomb.png", "too large to decode safely")


@kind
def unsupported_format_ico(d):
    write(d / "favicon.ico", encoded(picture(size=(32, 32)), "ICO"))
    return Rejected("favicon.ico", "unsupported image format ICO")


@kind
def orphan_caption(d):
    write(d / "nobody.txt", "a caption without its photo")
    return Rejected("nobody.txt", "not an image")


@kind
def huge_file(d):
    sparse(d / "big.jpg", 150 << 20)
    return Rejected("big.jpg", "file too large")


@kind
def unreadable(d):
    d.mkdir()
    make_unreadable(d / "locked.jpg", jpeg())
    return Rejected("locked.jpg", "cannot read (Permission denied)")


@kind
def fifo(d):
    d.mkdir()
    os.mkfifo(d / "pipe.jpg")
    return Rejected("pipe.jpg", "not a regular file (FIFO)")


@kind
def unix_socket(d):
    d.mkdir()
    with contextlib.chdir(d), socket.socket(socket.AF_UNIX) as s:
        s.bind("s.jpg")  # relative: a socket path must be under 108 bytes
    return Rejected("s.jpg", "not a regular file (socket)")


@kind
def symlink_outside(d):
    d.mkdir()
    (d / "out.jpg").symlink_to(sorted(pets_images().glob("*.jpg"))[0])
    return Rejected("out.jpg", "symlink points outside the volume")


@kind
def symlink_to_dev_zero(d):
    d.mkdir()
    (d / "zero.jpg").symlink_to("/dev/zero")
    return Rejected("zero.jpg", "symlink points outside the volume")


@kind
def symlink_relative_escape(d):
    d.mkdir()
    outside = d.parents[2] / "outside.png"  # beside the volume
    write(outside, png())
    (d / "up.png").symlink_to(Path("../../..") / "outside.png")
    return Rejected("up.png", "symlink points outside the volume")


@kind
def symlink_dangling(d):
    d.mkdir()
    (d / "gone.jpg").symlink_to(d / "nothing-here.jpg")
    return Rejected("gone.jpg", "broken symlink")


@kind
def symlink_loop(d):
    d.mkdir()
    (d / "a.jpg").symlink_to(d / "b.jpg")
    (d / "b.jpg").symlink_to(d / "a.jpg")
    return [Rejected("a.jpg", "symlink loop"), Rejected("b.jpg", "symlink loop")]


@kind
def symlink_to_folder(d):
    write(d / "real" / "inside.png", png())
    (d / "linked").symlink_to(d / "real")
    return [Rejected("linked", "not a regular file (folder)"), Indexed("real/inside.png")]


@kind
def symlink_to_fifo_inside(d):
    (d / ".private").mkdir(parents=True)
    os.mkfifo(d / ".private" / "pipe")
    (d / "p.jpg").symlink_to(d / ".private" / "pipe")
    return Rejected("p.jpg", "not a regular file (FIFO)")


@kind
def non_utf8_name(d):
    d.mkdir()
    with open(os.fsencode(d) + b"/caf\xe9.jpg", "wb") as f:
        f.write(jpeg())
    return Rejected("caf\\xe9.jpg", "not valid UTF-8")


@kind
def non_utf8_folder(d):
    folder = os.fsencode(d) + b"/\xff\xfe"
    os.makedirs(folder)
    with open(folder + b"/ok.png", "wb") as f:
        f.write(png())
    return Rejected("\\xff\\xfe/ok.png", "not valid UTF-8")


@kind
def path_too_long(d):
    deep = d.joinpath(*["f" * 240] * 9)  # over 2,048 bytes, each name under 255
    write(deep / "x.png", png())
    rel = "/".join(["f" * 240] * 9) + "/x.png"
    return Rejected(rel, "over the 2,048 the index stores")


# -- photos that must be indexed ----------------------------------------------------------


@kind
def animated_gif(d):
    frames = [picture("P", (40, 40)) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    write(d / "anim.gif", buf.getvalue())
    return Indexed("anim.gif")


@kind
def cmyk_jpeg(d):
    write(d / "print.jpg", encoded(picture("CMYK"), "JPEG"))
    return Indexed("print.jpg")


@kind
def png_16bit(d):
    ramp = np.linspace(0, 65535, 48 * 40).reshape(40, 48).astype(np.uint16)
    ramp[0, : next(_seed) % 48] = 123  # its own content
    write(d / "deep.png", encoded(Image.fromarray(ramp), "PNG"))
    return Indexed("deep.png")


@kind
def grayscale_jpeg(d):
    write(d / "gray.jpg", encoded(picture("L"), "JPEG"))
    return Indexed("gray.jpg")


@kind
def bilevel_png(d):
    write(d / "bw.png", encoded(picture("1"), "PNG"))
    return Indexed("bw.png")


@kind
def palette_with_transparency(d):
    image = picture("P")
    image.info["transparency"] = 0
    write(d / "cutout.png", encoded(image, "PNG", transparency=0))
    return Indexed("cutout.png")


@kind
def gray_alpha_png(d):
    write(d / "la.png", encoded(picture("LA"), "PNG"))
    return Indexed("la.png")


@kind
def rgba_png(d):
    image = picture("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    write(d / "rgba.png", encoded(image, "PNG"))
    return Indexed("rgba.png")


@kind
def exif_rotated_jpeg(d):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    write(d / "phone.jpg", encoded(picture(size=(60, 40)), "JPEG", exif=exif.tobytes()))
    return Indexed("phone.jpg")


@kind
def float_tiff(d):
    values = np.random.default_rng(next(_seed)).random((40, 48), dtype=np.float32)
    write(d / "f.tif", encoded(Image.fromarray(values, "F"), "TIFF"))
    return Indexed("f.tif")


@kind
def int32_tiff(d):
    values = np.random.default_rng(next(_seed)).integers(0, 65535, (40, 48)).astype(np.int32)
    write(d / "i.tif", encoded(Image.fromarray(values, "I"), "TIFF"))
    return Indexed("i.tif")


@kind
def webp_and_bmp(d):
    write(d / "x.webp", encoded(picture(), "WEBP"))
    write(d / "x.bmp", encoded(picture(), "BMP"))
    return [Indexed("x.webp"), Indexed("x.bmp")]


@kind
def png_named_jpg(d):
    write(d / "really-a-png.jpg", png())
    return Indexed("really-a-png.jpg")


@kind
def no_extension(d):
    write(d / "photo", jpeg())
    return Indexed("photo")


@kind
def uppercase_extension(d):
    write(d / "IMG_0001.JPG", jpeg())
    return Indexed("IMG_0001.JPG")


@kind
def symlink_inside(d):
    data = png()
    write(d / "a-original.png", data)
    (d / "b-link.png").symlink_to(d / "a-original.png")
    return [Indexed("a-original.png"), Indexed("b-link.png")]


@kind
def duplicate_content(d):
    data = jpeg()
    write(d / "a.jpg", data)
    write(d / "copy of a.jpg", data)
    return [Indexed("a.jpg"), Indexed("copy of a.jpg")]


@kind
def unicode_and_emoji_names(d):
    write(d / "chien café 🐶.png", png())
    write(d / "狗.png", png())
    return [Indexed("chien café 🐶.png"), Indexed("狗.png")]


@kind
def quotes_and_sql_in_names(d):
    write(d / "O'Brien.jpg", jpeg())
    write(d / "x'); DROP TABLE images;--.jpg", jpeg())
    write(d / 'say "cheese" %_\\.jpg', jpeg())
    return [
        Indexed("O'Brien.jpg"),
        Indexed("x'); DROP TABLE images;--.jpg"),
        Indexed('say "cheese" %_\\.jpg'),
    ]


@kind
def newline_and_tab_in_name(d):
    write(d / "two\nlines\tand tab.png", png())
    return Indexed("two\nlines\tand tab.png")


@kind
def long_name(d):
    name = "n" * 246 + ".png"  # 250 bytes: as long as most file systems allow
    write(d / name, png())
    return Indexed(name)


@kind
def deep_folders(d):
    write(d.joinpath(*[f"level{i}" for i in range(30)]) / "deep.png", png())
    return Indexed("/".join(f"level{i}" for i in range(30)) + "/deep.png")


@kind
def folder_named_like_a_photo(d):
    write(d / "album.jpg" / "inside.png", png())
    return Indexed("album.jpg/inside.png")


@kind
def hidden_file(d):
    write(d / ".upload-in-progress.jpg", b"\xff\xd8 half")
    write(d / "visible.png", png())
    return [Ignored(".upload-in-progress.jpg"), Indexed("visible.png")]


@kind
def hidden_folder(d):
    write(d / ".thumbnails" / "x.png", png())
    return Ignored(".thumbnails/x.png")


# -- labels.csv ----------------------------------------------------------------------------


def labelled(d: Path, csv_bytes: bytes, name: str = "labels.csv") -> None:
    write(d / "p.png", png())
    write(d / name, csv_bytes)


@kind
def csv_latin1(d):
    labelled(d, "file,breed\np.png,Bichon Frisé\n".encode("cp1252"))
    return Warned(
        "labels.csv", "not UTF-8 (read as cp1252)", Indexed("p.png", {"breed": "Bichon Frisé"})
    )


@kind
def csv_no_file_column(d):
    labelled(d, b"name,breed\np.png,beagle\n")
    return Warned(
        "labels.csv", "no 'file' column; its labels were not applied", Indexed("p.png", {})
    )


@kind
def csv_ragged_rows(d):
    labelled(d, b"file,breed,species\np.png,beagle\nother.png,pug,dog,extra,cells\n")
    return Warned("labels.csv", "different number of fields", Indexed("p.png", {"breed": "beagle"}))


@kind
def csv_200kb_field(d):
    labelled(d, b"file,notes,breed\np.png," + b"w" * 200_000 + b",beagle\n")
    return Warned(
        "labels.csv",
        f"truncated to {MAX_LABEL_CHARS:,} characters",
        Indexed("p.png", {"breed": "beagle", "notes": "w" * MAX_LABEL_CHARS}),
    )


@kind
def csv_with_bom(d):
    labelled(d, codecs.BOM_UTF8 + b"file,breed\np.png,pug\n")
    return Indexed("p.png", {"breed": "pug"})


@kind
def csv_utf16(d):
    labelled(d, "file,breed\np.png,shiba\n".encode("utf-16"))
    return Indexed("p.png", {"breed": "shiba"})


@kind
def csv_duplicate_rows(d):
    labelled(d, b"file,breed\np.png,pug\np.png,boxer\n")
    return Warned("labels.csv", "listed more than once", Indexed("p.png", {"breed": "boxer"}))


@kind
def csv_header_case_and_spaces(d):
    labelled(d, b" File , Breed \np.png,samoyed\n")
    return Indexed("p.png", {"Breed": "samoyed"})


@kind
def csv_empty(d):
    labelled(d, b"")
    return Warned("labels.csv", "empty (no header row)", Indexed("p.png", {}))


@kind
def csv_binary(d):
    labelled(d, b"file,breed\np.png,\x00\x01\x02beagle\n")
    return Warned("labels.csv", "binary content, not text", Indexed("p.png", {}))


@kind
def csv_too_large(d):
    write(d / "p.png", png())
    sparse(d / "labels.csv", 40 << 20)
    return Warned("labels.csv", "over the 33,554,432-byte limit; not read", Indexed("p.png", {}))


@kind
def csv_fifo(d):
    write(d / "p.png", png())
    os.mkfifo(d / "labels.csv")
    return Warned("labels.csv", "not a regular file (FIFO); not read", Indexed("p.png", {}))


@kind
def csv_labels_over_8192_bytes(d):
    cells = ",".join("v" * 1900 for _ in range(6))
    labelled(d, f"file,a,b,c,d,e,f\np.png,{cells}\n".encode())
    return Warned("p.png", "labels over 8,192 bytes in all")


@kind
def csv_deeper_wins_and_relative_paths(d):
    write(d / "sub" / "p.png", png())
    write(d / "labels.csv", b"file,breed,species\nsub/p.png,pug,dog\n")
    write(d / "sub" / "labels.csv", b"file,breed\np.png,boxer\n")
    return Indexed("sub/p.png", {"breed": "boxer", "species": "dog"})


@kind
def csv_name_in_nfd_on_disk(d):
    nfd = unicodedata.normalize("NFD", "café.png")  # as macOS writes it
    write(d / nfd, png())
    write(d / "labels.csv", "file,breed\ncafé.png,beagle\n".encode())  # typed: NFC
    return Indexed(nfd, {"breed": "beagle"})


@kind
def csv_name_in_another_case(d):
    write(d / "luna.jpg", jpeg())
    write(d / "labels.csv", b"file,breed\nLUNA.jpg,husky\n")
    return Warned(
        "labels.csv", "only ignoring case (line 2", Indexed("luna.jpg", {"breed": "husky"})
    )


@kind
def csv_name_matching_two_photos_by_case(d):
    write(d / "luna.png", png())
    write(d / "Luna.png", png())
    write(d / "labels.csv", b"file,breed\nLUNA.png,husky\n")
    return [
        Warned("labels.csv", "match several photos only ignoring case", Indexed("luna.png", {})),
        Indexed("Luna.png", {}),
    ]


@kind
def csv_duplicate_column(d):
    labelled(d, b"file,breed,breed\np.png,pug,boxer\n")
    return Warned("labels.csv", "'breed' in columns 2, 3", Indexed("p.png", {"breed": "boxer"}))


@kind
def csv_row_without_file_name(d):
    labelled(d, b"file,breed\n,pug\np.png,boxer\n")
    return Warned("labels.csv", "empty 'file' cell (line 2)", Indexed("p.png", {"breed": "boxer"}))


@kind
def csv_row_naming_no_photo(d):
    labelled(d, b"file,breed\np.png,pug\nghost.png,boxer\n")
    return Warned(
        "labels.csv", "name no photo here (line 3: 'ghost.png')", Indexed("p.png", {"breed": "pug"})
    )


@kind
def sidecar_name_in_another_case(d):
    write(d / "Rex.JPG", jpeg())
    write(d / "Rex.jpg.txt", "a good boy")
    return Indexed("Rex.JPG", {"caption": "a good boy"})


@kind
def copy_in_a_second_folder(d):
    data = jpeg()
    write(d / "b-original" / "rex.jpg", data)
    write(d / "b-original" / "labels.csv", b"file,breed\nrex.jpg,beagle\n")
    write(d / "a-copy" / "rex.jpg", data)  # first by name, and no labels of its own
    return [
        Indexed("b-original/rex.jpg", {"breed": "beagle"}),
        Indexed("a-copy/rex.jpg", {"breed": "beagle"}),
    ]


@kind
def copies_with_different_labels(d):
    data = png()
    write(d / "x" / "p.png", data)
    write(d / "x" / "p.json", '{"breed": "pug", "color": "black"}')
    write(d / "y" / "p.png", data)
    write(d / "y" / "p.json", '{"breed": "boxer", "age": "3"}')
    return Warned(
        "y/p.png",
        "the same photo as raw/copies_with_different_labels/x/p.png",
        Indexed("x/p.png", {"breed": "pug", "color": "black", "age": "3"}),
    )


# -- .json sidecars ------------------------------------------------------------------------


def sidecar(d: Path, name: str, data: bytes | str) -> None:
    write(d / "p.png", png())
    write(d / name, data)


@kind
def json_invalid(d):
    sidecar(d, "p.json", '{"breed": "pug",}')
    return Warned("p.json", "invalid JSON (line 1", Indexed("p.png", {}))


@kind
def json_nested_10000_deep(d):
    sidecar(d, "p.json", '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}")
    return Warned("p.json", "nested too deeply", Indexed("p.png", {}))


@kind
def json_huge_int(d):
    sidecar(d, "p.json", '{"n": ' + "9" * 5000 + "}")
    return Warned("p.json", "JSON not readable (Exceeds the limit", Indexed("p.png", {}))


@kind
def json_list_not_object(d):
    sidecar(d, "p.png.json", '["pug", "dog"]')
    return Warned("p.png.json", "a JSON list, not an object", Indexed("p.png", {}))


@kind
def json_non_string_values(d):
    sidecar(d, "p.json", json.dumps({"age": 3, "good": True, "none": None, "tags": ["a", "b"]}))
    return Indexed("p.png", {"age": "3", "good": "True", "tags": '["a", "b"]'})


@kind
def json_over_1mb(d):
    sidecar(d, "p.json", json.dumps({"breed": "pug", "pad": "x" * (1 << 20)}))
    return Warned("p.json", "over the 1,048,576-byte limit; not read", Indexed("p.png", {}))


@kind
def json_latin1(d):
    sidecar(d, "p.json", '{"breed": "Bichon Frisé"}'.encode("latin-1"))
    return Warned("p.json", "not UTF-8", Indexed("p.png", {"breed": "Bichon Frisé"}))


@kind
def json_many_keys(d):
    sidecar(d, "p.json", json.dumps({f"key{i:05d}": "value" * 4 for i in range(5000)}))
    return Warned("p.png", "labels over 8,192 bytes in all")


@kind
def json_symlink_outside(d):
    write(d.parents[2] / "outside.json", '{"breed": "stolen"}')
    write(d / "p.png", png())
    (d / "p.json").symlink_to(d.parents[2] / "outside.json")
    return Warned("p.json", "symlink points outside the volume; not read", Indexed("p.png", {}))


@kind
def json_lone_surrogate_value(d):
    # A JSON escape of half a UTF-16 pair: valid JSON, but no text encoder takes it.
    sidecar(d, "p.json", '{"breed": "pug", "note": "bad \\ud800 half"}')
    return Warned(
        "p.json",
        "lone surrogate escape",
        Indexed("p.png", {"breed": "pug", "note": "bad \ufffd half"}),
    )


@kind
def json_lone_surrogate_key(d):
    sidecar(d, "p.json", '{"bre\\udfffed": "pug", "tags": ["\\ud83d"]}')
    return Warned(
        "p.json",
        "replaced with U+FFFD",
        Indexed("p.png", {"bre\ufffded": "pug", "tags": '["\ufffd"]'}),
    )


# -- .txt captions -------------------------------------------------------------------------


@kind
def txt_2000_words(d):
    words = " ".join(f"word{i}" for i in range(2000))
    sidecar(d, "p.txt", words)
    return Warned(
        "p.txt",
        f"truncated to {MAX_LABEL_CHARS:,} characters",
        Indexed("p.png", {"caption": words[:MAX_LABEL_CHARS]}),
    )


@kind
def txt_binary_garbage(d):
    sidecar(d, "p.txt", bytes(range(256)) * 4)
    return Warned("p.txt", "binary content, not text", Indexed("p.png", {}))


@kind
def txt_empty(d):
    sidecar(d, "p.txt", b"  \n")
    return Indexed("p.png", {})


@kind
def txt_latin1(d):
    sidecar(d, "p.txt", "un chien très sage".encode("latin-1"))
    return Warned("p.txt", "not UTF-8", Indexed("p.png", {"caption": "un chien très sage"}))


# -- secrets in labels --------------------------------------------------------------------

# Shaped like a Replicate token (see adrag_assets/redact.py): never stored, wherever it comes from.
TOKEN = "r8_" + "Zq7" * 12 + "x"  # 37 characters after the prefix


@kind
def token_in_csv_cell_and_header(d):
    # The last row names no photo: its warning quotes the name, which must not show either.
    rows = f"file,breed,note,{TOKEN}\np.png,pug,key {TOKEN} pasted,x\n{TOKEN}.png,a,b,c\n"
    labelled(d, rows.encode())
    return Warned(
        "labels.csv",
        "token-shaped text; stored with it replaced by [redacted]",
        Indexed("p.png", {"breed": "pug", "note": "key [redacted] pasted", "[redacted]": "x"}),
    )


@kind
def token_in_json_and_caption(d):
    write(d / "a.png", png())
    write(d / "a.json", json.dumps({"owner": f"id {TOKEN}", TOKEN: "y"}))
    write(d / "b.png", png())
    write(d / "b.txt", f"caption with {TOKEN}")
    return [
        Warned(
            "a.json",
            "token-shaped",
            Indexed("a.png", {"owner": "id [redacted]", "[redacted]": "y"}),
        ),
        Warned("b.txt", "token-shaped", Indexed("b.png", {"caption": "caption with [redacted]"})),
    ]


# -- one run over all of them -------------------------------------------------------------


@dataclass
class Outcome:
    first: dict
    second: dict
    files: dict[str, str]  # volume_files: path -> image_id
    images: dict[str, dict]  # image_id -> row
    rejected: dict[str, str]  # path -> reason
    embedded: set[str]
    indexed: set[str]
    warnings: list[str]
    expected: dict[str, list[Expect]]
    pending: dict[str, str]  # what the upload sensor would still act on after the runs
    milvus_rows: list[dict]  # every row of the live collection, labels and BM25 text too
    settings: Settings
    instance: dg.DagsterInstance


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> Iterator[Outcome]:
    home = tmp_path_factory.mktemp("bad-inputs") / "home"
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for k, v in {
            "ADRAG_HOME": str(home),
            "ADRAG_ENCODER": TEST_ENCODER,
            "ADRAG_PRECISION": "fp32",
            "ADRAG_BATCH_SIZE": "32",
            "DAGSTER_HOME": str(home / "dagster"),
        }.items():
            mp.setenv(k, v)
        mp.delenv("ADRAG_VOLUME", raising=False)
        mp.delenv("ADRAG_MILVUS_URI", raising=False)
        settings = load_settings()
        raw = settings.raw_dir
        raw.mkdir(parents=True)
        # A few real pet photos with their labels.csv: the good library beside the bad files.
        (raw / "pets").mkdir()
        for p in PET_PHOTOS:
            shutil.copy(p, raw / "pets" / p.name)
        # Its rows for these photos only: a row naming no photo is a warning (a kind below).
        header, *rows = (PETS / "labels.csv").read_text().splitlines()
        names = {p.name for p in PET_PHOTOS}
        kept = [r for r in rows if r.split(",")[0] in names]
        assert len(kept) == len(names)
        (raw / "pets" / "labels.csv").write_text("\n".join([header, *kept]) + "\n")
        expected = {name: build(raw / name) for name, build in KINDS.items()}
        with reads_obey_permissions():  # so the chmod-000 file is unreadable even as root
            first = run_pipeline(settings, instance)
            second = run_pipeline(settings, instance)
        t, index = tables_for(settings), index_for(settings)
        out = Outcome(
            first=first,
            second=second,
            files={
                r["path"]: r["image_id"]
                for r in t.read("volume_files", ["path", "image_id"]).to_pylist()
            },
            images={
                r["image_id"]: r for r in read_images(t, ["image_id", "path", "labels"]).to_pylist()
            },
            rejected={
                r["path"]: r["reason"]
                for r in t.read("rejected_images", ["path", "reason"]).to_pylist()
            },
            embedded=set(t.read("image_embeddings", ["image_id"]).column("image_id").to_pylist()),
            indexed=index.ids(index.live_collection()),
            warnings=first["images"]["label_warnings"],
            expected=expected,
            pending=pending_changes(open_volume(settings.volume), t)[0],
            settings=settings,
            instance=instance,
            milvus_rows=index.client.query(
                index.live_collection(),
                filter='image_id != ""',
                output_fields=["image_id", "path", "labels", "text"],
                limit=16_384,
            ),
        )
        index.close()
        yield out


def test_the_matrix_is_wide():
    assert len(KINDS) >= 40


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind(outcome: Outcome, name: str):
    for expect in outcome.expected[name]:
        check(outcome, f"raw/{name}", expect)


def check(o: Outcome, folder: str, e: Expect) -> None:
    if isinstance(e, Indexed):
        path = f"{folder}/{e.path}"
        assert path not in o.rejected, o.rejected[path]
        assert path in o.files, f"{path} not ingested"
        image_id = o.files[path]
        assert image_id in o.images and image_id in o.embedded and image_id in o.indexed
        if e.labels is not None:
            assert json.loads(o.images[image_id]["labels"]) == e.labels
    elif isinstance(e, Rejected):
        path = f"{folder}/{e.path}"
        assert path in o.rejected, f"{path} not rejected; rejected: {sorted(o.rejected)}"
        reason = o.rejected[path]
        assert reason.startswith(f"{path}: ") and e.reason in reason, reason
        assert path not in o.files
    elif isinstance(e, Warned):
        named = f"{folder}/{e.file}: "
        hits = [w for w in o.warnings if w.startswith(named) and e.text in w]
        assert hits, f"no warning {named}...{e.text}; warnings: {o.warnings}"
        check(o, folder, e.photo)
    else:
        path = f"{folder}/{e.path}"
        assert path not in o.files and path not in o.rejected


def test_run_goes_on_and_every_good_photo_is_indexed(outcome: Outcome):
    good = {f"raw/pets/{p.name}" for p in PET_PHOTOS}
    for name, expects in outcome.expected.items():
        for e in expects:
            e = e.photo if isinstance(e, Warned) else e
            if isinstance(e, Indexed):
                good.add(f"raw/{name}/{e.path}")
    assert good <= set(outcome.files)
    ids = {outcome.files[p] for p in good}
    assert ids == set(outcome.images) == outcome.embedded == outcome.indexed
    meta = outcome.first
    assert meta["image_embeddings"]["failed"] == 0
    assert meta["image_index"]["dagster/row_count"] == len(ids)


def test_exactly_the_bad_files_are_rejected(outcome: Outcome):
    expected = {
        f"raw/{name}/{e.path}"
        for name, expects in outcome.expected.items()
        for e in expects
        if isinstance(e, Rejected)
    }
    assert set(outcome.rejected) == expected
    assert outcome.first["rejected_images"]["dagster/row_count"] == len(expected)


def test_every_warning_names_its_file(outcome: Outcome):
    assert outcome.warnings, "label warnings are in the images metadata"
    assert outcome.first["images"]["label_warning_count"] == len(outcome.warnings)
    for w in outcome.warnings:
        assert w.startswith("raw/") and ": " in w, w
    # The pet sample's labels.csv is fine: no warning about it.
    assert not [w for w in outcome.warnings if w.startswith("raw/pets/")]


def test_a_second_run_reads_nothing_and_says_the_same(outcome: Outcome):
    second = outcome.second
    assert second["images"]["files_read"] == 0
    assert second["images"]["newly_rejected"] == 0
    assert second["images"]["added"] == second["images"]["updated"] == 0
    assert second["image_embeddings"]["embedded"] == 0
    assert second["image_index"]["mode"] == "noop"
    assert second["images"]["label_warnings"] == outcome.warnings
    # The upload sensor sees nothing left to do: bad files do not start a run every tick.
    assert outcome.pending == {}


def test_removing_odd_files_removes_their_rows(outcome: Outcome):
    """Deleting by key works for names with quotes, backslashes and escaped bytes."""
    raw = outcome.settings.raw_dir
    gone = [
        "non_utf8_name/caf\\xe9.jpg",
        "quotes_and_sql_in_names/O'Brien.jpg",
        'quotes_and_sql_in_names/say "cheese" %_\\.jpg',
        "fifo/pipe.jpg",
    ]
    os.unlink(os.fsencode(raw / "non_utf8_name") + b"/caf\xe9.jpg")
    for rel in gone[1:]:
        (raw / rel).unlink()
    with reads_obey_permissions():
        run_pipeline(outcome.settings, outcome.instance)
    t = tables_for(outcome.settings)
    files = set(t.read("volume_files", ["path"]).column("path").to_pylist())
    rejected = set(t.read("rejected_images", ["path"]).column("path").to_pylist())
    for rel in gone:
        assert f"raw/{rel}" not in files | rejected
    assert files == set(outcome.files) - {f"raw/{rel}" for rel in gone}
    assert rejected == set(outcome.rejected) - {f"raw/{rel}" for rel in gone}


def test_a_token_in_labels_is_written_nowhere(outcome: Outcome):
    """Labels go through the redaction everything adrag writes goes through: no byte of the
    token in any file adrag wrote (Delta data, statistics, change feed, Milvus) nor in what
    Milvus returns. Only the volume, the user's own files, holds it."""
    home, volume = outcome.settings.home, outcome.settings.volume
    assert volume.is_relative_to(home)  # so the walk below covers the tables and Milvus too
    written = [p for p in home.rglob("*") if p.is_file() and not p.is_relative_to(volume)]
    assert any("_change_data" in p.parts for p in written)  # the change feed is among them
    leaked = [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert not leaked, leaked
    assert outcome.milvus_rows and TOKEN not in json.dumps(outcome.milvus_rows)
    assert any("[redacted]" in json.dumps(r["labels"]) for r in outcome.milvus_rows)
    assert not [w for w in outcome.warnings if TOKEN in w]


def test_the_index_takes_labels_written_before_the_caps(tmp_path):
    """Rows from older tables may hold labels over the text field's size: cut, not failed."""
    index = MilvusIndex(str(tmp_path / "milvus" / "m.db"))
    try:
        name = index.ensure_collection("random:adrag-tiny@0", 4, TEST_ENCODER)
        long = {"caption": "chien très sage " * 2000, "breed": "é" * 9000}
        assert len(labels_text(long).encode()) <= TEXT_MAX_BYTES
        row = {"image_id": "a" * 64, "path": "raw/x.png", "labels": long, "vector": [1, 0, 0, 0]}
        assert index.upsert(name, [row]) == 1
        assert index.count(name) == 1
    finally:
        index.close()
