"""Fast commands: `adrag status` and `--help` load no model or orchestration library, and
search keeps the live collection's encoder between calls yet follows an alias switch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.embeddings.sync import sync_embeddings
from adrag_assets.images.sync import sync_images
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.search import LIVE, search_live
from adrag_assets.index.sync import activate, sync_index
from adrag_assets.settings import Settings
from adrag_assets.volume import open_volume
from tests.support.data import REPO, copy_few_pets
from tests.support.helpers import index_for, tables_for

HEAVY = ("torch", "open_clip", "mlflow", "dagster")

# Runs in a fresh interpreter: what the commands import is what a user's `adrag` pays for.
# The live collection status describes is made without an encoder (a 4-d vector).
COMMANDS = """
import json, sys
from adrag_app.cli import main
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import load_settings

def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)

def run(*args):
    try:
        main(list(args))
    except SystemExit as e:
        return e.code

seen = {"import": heavy()}
seen["help"] = (run("--help"), heavy())
seen["usage_error"] = (run("search", " "), heavy())
s = load_settings()
index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
name = index.ensure_collection("random:adrag-tiny@0", 4, "random:adrag-tiny")
index.upsert(name, [dict(image_id="a" * 64, path="raw/a.jpg", labels={}, vector=[0.5] * 4)])
index.point_alias(name)
index.close()
seen["status"] = (run("status"), heavy())
seen["status_json"] = (run("status", "--json"), heavy())
print("SEEN " + json.dumps(seen))
"""


def test_status_and_help_import_no_torch_open_clip_mlflow_or_dagster(env, settings):
    copy_few_pets(settings.raw_dir, ("beagle",))
    out = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{COMMANDS}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    *printed, last = out.stdout.strip().splitlines()
    seen = json.loads(last.removeprefix("SEEN "))
    assert seen == {
        "import": [],
        "help": [0, []],
        "usage_error": [2, []],
        "status": [0, []],
        "status_json": [0, []],
    }, out.stderr
    status = json.loads("\n".join(printed[printed.index("{") :]))
    assert (status["files"], status["index_rows"]) == (8, 1)
    assert status["live_encoder_id"] == "random:adrag-tiny@0"


class CountingClient:
    """The index's real Milvus client, counting the calls made through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self._client, name)


class CountingIndex(MilvusIndex):
    def _connect(self) -> Any:
        self.counting = CountingClient(super()._connect())
        return self.counting

    def calls_during(self, action) -> Counter[str]:
        self.counting.calls.clear()
        action()
        return Counter(self.counting.calls)


def build_and_switch(s: Settings, spec: str) -> str:
    """Embed the photos with ``spec``, index them in its own collection and move the alias
    there (dropping the previous one), as the pipeline does, through another client."""
    encoder = load_encoder(spec, s.precision)
    sync_embeddings(tables_for(s), encoder)
    writer = index_for(s)
    name = sync_index(tables_for(s), writer, encoder.encoder_id, spec, encoder.dim).collection
    activate(writer, name)
    writer.close()
    return name


@pytest.fixture
def indexed(settings: Settings) -> Settings:
    copy_few_pets(settings.raw_dir, ("beagle", "pug", "Persian"))
    sync_images(open_volume(settings.volume_uri), tables_for(settings))
    build_and_switch(settings, "random:adrag-tiny")
    return settings


def test_search_keeps_its_encoder_and_follows_an_alias_switch(indexed: Settings):
    s = indexed.model_copy(update={"search_mode": "dense"})  # the encoder alone decides
    query = "a beagle on a lawn"
    LIVE.clear()
    index = CountingIndex(s.milvus_uri, s.milvus_token, s.index_alias)

    def search():
        return search_live(index, query, 3, precision=s.precision, settings=s)

    _, first = search()
    assert first.encoder_id == "random:adrag-tiny@0"
    # Warm: per search, the alias is read (list + describe), the relevance floor's BM25 probe
    # finds "beagle" in the labels, the collection is searched and the candidates' vectors
    # read (diversity); its properties are not read again and the encoder is the one already
    # loaded.
    warm = Counter(list_aliases=1, describe_alias=1, search=2, get=1)
    for _ in range(3):
        assert index.calls_during(search) == warm
    assert search()[1].encoder is first.encoder

    # An encoder switch, made by another client while this one keeps its searcher.
    built = build_and_switch(s, "random:adrag-tiny@1")
    assert first.name not in index.collections()
    new_encoder = load_encoder("random:adrag-tiny@1", s.precision)

    calls = index.calls_during(search)
    hits, live = search()
    assert (live.name, live.encoder_id) == (built, "random:adrag-tiny@1")
    assert live.encoder is new_encoder
    assert calls["describe_collection"] == 1  # the new collection's encoder, read once
    assert index.calls_during(search)["describe_collection"] == 0
    # The query was encoded with the new collection's encoder, not the one cached before.
    vector = new_encoder.encode_texts([query])[0].tolist()
    assert hits == index.search_dense(built, vector, 3)
    stale = first.encoder.encode_texts([query])[0].tolist()
    assert hits != index.search_dense(built, stale, 3)
    index.close()
