"""The volume and the Delta tables in a bucket: a real S3 endpoint (moto's server), the real
`adrag` CLI in subprocesses, real Delta commits and change feed on S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from adrag_assets.volume import FileStat, VolumeUnavailable, open_volume
from adrag_assets.volume.objstore import ObjectStoreVolume
from tests.support.data import PETS, TEST_ENCODER, pets_images
from tests.support.helpers import adrag, draw_brand
from tests.support.s3 import SECRET, S3Server, moto_s3

BUCKET = "adrag-bucket"
# A few breeds, so search has something to tell apart; the whole sample is slow on 2 cores.
PHOTOS = [
    "beagle_10.jpg",
    "beagle_107.jpg",
    "Abyssinian_101.jpg",
    "Abyssinian_12.jpg",
    "pug_112.jpg",
    "pug_127.jpg",
]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with moto_s3() as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)  # obstore and deltalake in this process read them too
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def bucket_env(s3: S3Server, tmp_path: Path) -> dict[str, str]:
    env = s3.env(
        ADRAG_HOME=str(tmp_path / "home"),
        ADRAG_VOLUME=f"s3://{BUCKET}/library",
        ADRAG_TABLES=f"s3://{BUCKET}/delta",
        ADRAG_ENCODER=TEST_ENCODER,
        ADRAG_PRECISION="fp32",
        DAGSTER_HOME=str(tmp_path / "home" / "dagster"),
        ADRAG_MILVUS_URI="",
    )
    client = s3.client()
    images = pets_images()
    for name in PHOTOS:
        client.put_object(
            Bucket=BUCKET, Key=f"library/raw/pets/{name}", Body=(images / name).read_bytes()
        )
    labels = [line for line in (PETS / "labels.csv").read_text().splitlines()[1:]]
    wanted = ["file,breed,species", *(x for x in labels if x.split(",")[0] in PHOTOS)]
    client.put_object(Bucket=BUCKET, Key="library/raw/pets/labels.csv", Body="\n".join(wanted))
    # A caption sidecar and a hidden upload-in-progress file, as on disk.
    client.put_object(Bucket=BUCKET, Key="library/raw/pets/pug_112.txt", Body=b"a pug on a sofa")
    client.put_object(Bucket=BUCKET, Key="library/raw/pets/.upload.tmp", Body=b"partial")
    brand = tmp_path / "bottle.png"
    draw_brand(brand, (20, 120, 200), "PNG")
    client.put_object(Bucket=BUCKET, Key="library/brand/bottle.png", Body=brand.read_bytes())
    return env


def test_ingest_search_generate_delete_from_a_bucket(bucket_env, s3, tmp_path):
    out = adrag("ingest", env=bucket_env)
    assert "succeeded" in out.stdout and f"s3://{BUCKET}/library" in out.stdout

    status = json.loads(adrag("status", "--json", env=bucket_env).stdout)
    n = len(PHOTOS)
    assert (status["files"], status["images"], status["embeddings"]) == (n, n, n)
    assert (status["index_rows"], status["rejected"]) == (n, 0)
    assert status["volume"] == f"s3://{BUCKET}/library"

    keys = s3.keys(BUCKET)
    # The Delta logs are in the bucket, not on disk.
    for table in ("images", "image_embeddings", "volume_files"):
        assert f"delta/{table}/_delta_log/00000000000000000000.json" in keys, table
    assert not (tmp_path / "home" / "tables").exists()

    hits = json.loads(adrag("search", "a pug", "-k", "3", "--json", env=bucket_env).stdout)
    assert len(hits) == 3 and all(h["path"].startswith("raw/pets/") for h in hits)
    # The caption and the labels were read from the bucket's sidecars.
    hits = json.loads(adrag("search", "pug on a sofa", "-k", "1", "--json", env=bucket_env).stdout)
    assert hits[0]["path"] == "raw/pets/pug_112.jpg"

    ad = json.loads(adrag("generate", "a pug on a sofa", "--json", env=bucket_env).stdout)[0]
    assert ad["file"] == f"s3://{BUCKET}/library/{ad['path']}"
    assert ad["brand_path"] == "brand/bottle.png"
    keys = s3.keys(BUCKET)
    assert f"library/{ad['path']}" in keys and f"library/{ad['sidecar']}" in keys
    sidecar = json.loads(
        s3.client().get_object(Bucket=BUCKET, Key=f"library/{ad['sidecar']}")["Body"].read()
    )
    assert sidecar["path"] == ad["path"] and sidecar["seed_path"] == ad["seed_path"]

    # A deleted object drops out of the tables and the index on the next ingest.
    s3.client().delete_object(Bucket=BUCKET, Key="library/raw/pets/beagle_10.jpg")
    adrag("ingest", env=bucket_env)
    status = json.loads(adrag("status", "--json", env=bucket_env).stdout)
    assert (status["files"], status["images"], status["index_rows"]) == (n - 1, n - 1, n - 1)
    found = json.loads(adrag("search", "a beagle", "-k", "10", "--json", env=bucket_env).stdout)
    assert "raw/pets/beagle_10.jpg" not in {h["path"] for h in found}

    # Nothing the run left, on disk or in the bucket, holds the secret key.
    leaks = [
        str(p)
        for p in (tmp_path / "home").rglob("*")
        if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    client = s3.client()
    leaks += [
        k
        for k in s3.keys(BUCKET)
        if SECRET.encode() in client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
    ]
    assert not leaks


def test_change_stamp_changes_with_content_and_local_path_downloads(s3):
    client = s3.client()
    client.create_bucket(Bucket="stamps")
    volume = open_volume("s3://stamps/v")
    assert isinstance(volume, ObjectStoreVolume)
    client.put_object(Bucket="stamps", Key="v/raw/a.txt", Body=b"one")
    first = volume.stat("raw/a.txt")
    # Same size, same second (S3 keeps last-modified to the second): the ETag still shows it.
    client.put_object(Bucket="stamps", Key="v/raw/a.txt", Body=b"two")
    second = volume.stat("raw/a.txt")
    assert isinstance(first, FileStat) and isinstance(second, FileStat)
    assert first.size == second.size == 3 and first.mtime_ns != second.mtime_ns
    assert [f.path for f in volume.walk("raw")] == ["raw/a.txt"]
    assert volume.local_path("raw/a.txt").read_bytes() == b"two"
    assert volume.stat("raw/missing.txt") is None
    for bad in ("../x", "/etc/passwd", "raw/../../x"):
        with pytest.raises(ValueError):
            volume.read_bytes(bad)


def test_a_failed_write_leaves_no_partial_objects(s3):
    client = s3.client()
    client.create_bucket(Bucket="partial")
    volume = open_volume("s3://partial/v")

    def cut_off() -> Iterator[bytes]:
        """The ad's upload, cut off half way (a dropped connection)."""
        yield b"\x89PNG half an ad"
        raise ConnectionResetError("connection lost mid-upload")

    files = [("ads/d/x.json", b"{}"), ("ads/d/x.png", cut_off())]  # the second put fails
    with pytest.raises(Exception):  # noqa: B017 - whatever the store raises, nothing is left
        volume.write_all_or_nothing(files)  # type: ignore[list-item]
    assert s3.keys("partial") == []
    volume.write_all_or_nothing([("ads/d/y.json", b"{}"), ("ads/d/y.png", b"png")])
    assert s3.keys("partial") == ["v/ads/d/y.json", "v/ads/d/y.png"]


def test_missing_bucket_is_one_clear_line(bucket_env):
    env = {**bucket_env, "ADRAG_VOLUME": "s3://no-such-bucket/library"}
    out = adrag("ingest", env=env, check=False)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-bucket" in lines[0] and "does not exist" in lines[0]

    env = {**bucket_env, "ADRAG_TABLES": "s3://no-such-tables/delta"}
    out = adrag("status", env=env, check=False)
    assert out.returncode == 1 and "no-such-tables" in out.stderr
    assert "does not exist" in out.stderr


def test_wrong_credentials_name_the_bucket_never_the_secret(tmp_path, monkeypatch):
    # moto checks credentials only when asked to; with no allowed unauthenticated calls,
    # every request is checked and our made-up key is refused.
    with moto_s3({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as server:
        env = server.env(
            ADRAG_HOME=str(tmp_path / "home"),
            ADRAG_VOLUME=f"s3://{BUCKET}/library",
            ADRAG_ENCODER=TEST_ENCODER,
        )
        out = adrag("ingest", env=env, check=False)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert BUCKET in lines[0] and "access denied" in lines[0]
        assert "AWS_SECRET_ACCESS_KEY" in lines[0]
        assert SECRET not in out.stdout + out.stderr
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        with pytest.raises(VolumeUnavailable) as e:
            open_volume(f"s3://{BUCKET}/library").check()
        assert SECRET not in str(e.value)
