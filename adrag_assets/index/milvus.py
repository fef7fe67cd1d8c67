"""The Milvus index: one collection per encoder, an alias naming the live one.

One client for the three ways to reach Milvus, chosen by the URI alone:

* a file path (``.../adrag.db``): Milvus Lite inside this process (one process at a time);
* ``http://127.0.0.1:19530``: a ``milvus-lite server`` shared by Dagster runs and the app;
* any Milvus standalone or cluster URI, with a token.

The collection is a derived index: it can always be rebuilt from ``image_embeddings``. Its
properties record which encoder built it and the last Delta version it was synced to.

Errors come out as :class:`MilvusError` (nothing answers: :class:`MilvusUnavailable`; data
Milvus cannot read: :class:`IndexUnreadable`), one line naming the URI with its credentials
masked, whatever pymilvus raised.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pymilvus import (
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
)

from adrag_assets.redact import redact_text
from adrag_assets.volume.files import MAX_LABELS_BYTES, MAX_PATH_BYTES

PROP_ENCODER_ID = "adrag.encoder_id"
PROP_ENCODER_SPEC = "adrag.encoder_spec"
PROP_SYNCED_VERSION = "adrag.synced_version"
PROP_SYNCED_AT = "adrag.synced_at"
PROP_TEXT_VERSION = "adrag.text_version"  # the photo_text version whose words it holds
QUERY_LIMIT = 16384  # Milvus's cap on rows returned by one query
# VARCHAR sizes, in bytes (Milvus Lite counts characters, other Milvus builds may count bytes;
# bytes are never fewer). Paths over MAX_PATH_BYTES are rejected at ingest.
TEXT_MAX_BYTES = MAX_LABELS_BYTES
_UNAVAILABLE = 2  # pymilvus' code for "nothing answers at that address" (and lost connections)
_NOT_LOADED = 101  # Milvus' CollectionNotLoaded
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Milvus Lite (a file, served in-process, or `milvus-lite server`) is grpc's Python server with
# its default ping policy: a ping only while a call is in flight, at most one per 5 minutes;
# the third ping too soon gets GOAWAY "too_many_pings" and the connection drops (the client
# logs it, and pymilvus' recovery logs a traceback). pymilvus pings every 10 s, idle or not.
# Past 5 minutes (with a margin) and never idle, the client's pings are always accepted.
LITE_KEEPALIVE = {
    "grpc.keepalive_time_ms": 330_000,
    "grpc.keepalive_permit_without_calls": False,
}


class MilvusError(RuntimeError):
    """Milvus failed; the message names the (masked) URI and the reason, on one line."""


class MilvusUnavailable(MilvusError, ConnectionError):
    """Nothing answers at the URI, or the Milvus Lite file is in use by another process."""


class IndexUnreadable(MilvusError):
    """Milvus answers but cannot read its own data (damaged files): rebuild from Delta."""


class _NoLiteSessionTs(logging.Filter):
    # Milvus Lite has no MVCC session timestamp for iterators; pymilvus warns on every
    # query_iterator and uses the client's clock, which is what Strong consistency wants.
    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_NoLiteSessionTs())


@dataclass(frozen=True)
class Hit:
    image_id: str
    path: str
    score: float
    labels: dict

    def as_dict(self) -> dict:
        return {
            "image_id": self.image_id,
            "path": self.path,
            "score": self.score,
            "labels": self.labels,
        }


def collection_name(encoder_id: str) -> str:
    """A valid, stable Milvus collection name for an encoder id (letters, digits, _)."""
    slug = re.sub(r"[^0-9A-Za-z]+", "_", encoder_id).strip("_")[:48]
    return f"adrag_{slug}_{hashlib.sha1(encoder_id.encode()).hexdigest()[:8]}"


def labels_text(labels: dict, words: str = "") -> str:
    """What BM25 indexes for a photo: its label values and caption, as words, then the words
    read in the photo (OCR, ``photo_text``).

    Ingest keeps labels within the field's size (with a warning when it cuts them); cutting
    here too means rows written before that rule can never make an upsert fail. Labels come
    first: what people typed outranks what OCR read when the field is full.
    """
    text = " ".join(str(v).replace("_", " ") for _, v in sorted(labels.items()))
    if words:
        text = f"{text} {words}" if text else words
    return text.encode("utf-8")[:TEXT_MAX_BYTES].decode("utf-8", "ignore")


def is_local_file_uri(uri: str) -> bool:
    return "://" not in uri


def grpc_options(uri: str) -> dict[str, Any]:
    """The gRPC channel options for ``uri``: Milvus Lite's ping policy for a file or a server
    on this machine; pymilvus' own (what Milvus standalone and cluster accept) elsewhere."""
    if is_local_file_uri(uri) or urlparse(uri).hostname in LOOPBACK_HOSTS:
        return dict(LITE_KEEPALIVE)
    return {}


def display_uri(uri: str) -> str:
    """The URI with any user:password part masked, for logs, metadata and errors."""
    return redact_text(uri)


def _one_line(error: BaseException) -> str:
    text = error.message if isinstance(error, MilvusException) else str(error)
    return redact_text(" ".join(str(text).split()))


def _translate(error: MilvusException, shown_uri: str) -> MilvusError:
    if error.code == _UNAVAILABLE:
        return MilvusUnavailable(f"lost Milvus at {shown_uri}: {_one_line(error)}")
    return MilvusError(f"Milvus at {shown_uri}: {_one_line(error)}")


class _Translated:
    """A MilvusClient whose errors are MilvusError (one line, masked URI) rather than
    pymilvus' exceptions, so every caller can report them the same way."""

    def __init__(self, client: MilvusClient, shown_uri: str) -> None:
        self._client = client
        self._shown_uri = shown_uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except MilvusException as e:
                collection = args[0] if args else kwargs.get("collection_name")
                if e.code != _NOT_LOADED or not isinstance(collection, str):
                    raise _translate(e, self._shown_uri) from e
            # A restarted server (`adrag up` starts a dead one again) holds every collection
            # released: a long-lived client (the app's) loads it again, once, and goes on.
            try:
                self._client.load_collection(collection)
                return attr(*args, **kwargs)
            except MilvusException as e:
                raise _translate(e, self._shown_uri) from e

        return call


def lite_in_use(path: Path) -> bool:
    """Whether another process holds this Milvus Lite folder (milvus-lite flocks its LOCK)."""
    lock = path / "LOCK"
    if not lock.is_file():
        return False
    with lock.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


class MilvusIndex:
    def __init__(self, uri: str, token: str = "", alias: str = "adrag_images"):
        self.uri = uri
        self.shown_uri = display_uri(uri)
        self.token = token
        self.alias = alias
        self._loaded: set[str] = set()

    @property
    def is_lite_file(self) -> bool:
        return is_local_file_uri(self.uri)

    @cached_property
    def client(self) -> MilvusClient:
        # Typed as the client it wraps: every method is MilvusClient's, errors translated.
        return _Translated(self._connect(), self.shown_uri)  # type: ignore[return-value]

    def _connect(self) -> MilvusClient:
        path = Path(self.uri)
        if self.is_lite_file:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and not path.is_dir():
                raise IndexUnreadable(
                    f"the Milvus Lite data at {path} is a file, not a Milvus Lite folder "
                    f"(damaged, or written by another Milvus Lite version)"
                )
        try:
            return MilvusClient(uri=self.uri, token=self.token, grpc_options=grpc_options(self.uri))
        except Exception as e:
            if not self.is_lite_file:
                raise MilvusUnavailable(
                    f"cannot reach Milvus at {self.shown_uri} ({_one_line(e)}): is it running? "
                    f"`adrag up` starts one, or set ADRAG_MILVUS_URI to a running Milvus"
                ) from e
            self.check_not_in_use()
            # milvus-lite logs the cause and gives pymilvus none; what is left is its data.
            raise IndexUnreadable(
                f"cannot open the Milvus Lite data at {path} ({_one_line(e)})"
            ) from e

    def check_not_in_use(self) -> None:
        """MilvusUnavailable when another process holds this Milvus Lite file."""
        if self.is_lite_file and "client" not in self.__dict__ and lite_in_use(Path(self.uri)):
            raise MilvusUnavailable(
                f"the Milvus Lite file {self.shown_uri} is in use by another process; a "
                f"Milvus Lite file is usable by one process at a time: with several "
                f"(Dagster + app), run `adrag up` or a `milvus-lite server` and set "
                f"ADRAG_MILVUS_URI=http://127.0.0.1:PORT"
            )

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]
            self._loaded.clear()

    def set_aside(self) -> Path:
        """Move this Milvus Lite file (a folder) aside, with a timestamp suffix; a fresh one
        is created on next use. Only for a local file: a server owns its data folder."""
        if not self.is_lite_file:
            raise ValueError(f"{self.shown_uri} is not a Milvus Lite file")
        path = Path(self.uri).absolute()
        self.close()
        # The in-process Milvus Lite server keeps the folder open and locked until released.
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(path))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.broken-{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.broken-{stamp}-{n}")
            n += 1
        path.rename(target)
        return target

    # -- collections ---------------------------------------------------------------------

    def ensure_collection(self, encoder_id: str, dim: int, encoder_spec: str) -> str:
        name = collection_name(encoder_id)
        if self.client.has_collection(name):
            return self.load(name)
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("image_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_BYTES)
        schema.add_field("labels", DataType.JSON)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES, enable_analyzer=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        index = self.client.prepare_index_params()
        index.add_index(
            "vector",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": 16, "efConstruction": 200},
        )
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        # Strong consistency: a count or check right after a sync sees that sync's writes.
        self.client.create_collection(name, schema=schema, consistency_level="Strong")
        # sync=False: waiting for the build calls an RPC that Milvus Lite lacks (it logs an
        # error); loading the collection below waits for the indexes anyway.
        self.client.create_index(name, index, sync=False)
        self.client.alter_collection_properties(
            name, properties={PROP_ENCODER_ID: encoder_id, PROP_ENCODER_SPEC: encoder_spec}
        )
        return self.load(name)

    def properties(self, name: str) -> dict:
        return dict(self.client.describe_collection(name).get("properties") or {})

    def set_properties(self, name: str, **props: str) -> None:
        self.client.alter_collection_properties(name, properties=props)

    def synced_version(self, name: str, prop: str = PROP_SYNCED_VERSION) -> int | None:
        v = self.properties(name).get(prop)
        return int(v) if v not in (None, "") else None

    def live_collection(self) -> str | None:
        """The collection the alias points at, or None when nothing is live yet."""
        if self.alias not in self.client.list_aliases().get("aliases", []):
            return None
        return self.client.describe_alias(self.alias).get("collection_name")

    def live_encoder_id(self) -> str | None:
        """The encoder id recorded by the live collection, or None when nothing is live yet."""
        live = self.live_collection()
        return (self.properties(live).get(PROP_ENCODER_ID) or None) if live else None

    def load(self, name: str) -> str:
        """Load a collection for search/query (needed again after any process restart)."""
        if name not in self._loaded:
            self.client.load_collection(name)
            self._loaded.add(name)
        return name

    def forget(self, name: str) -> None:
        """Forget that ``name`` was loaded (it was dropped)."""
        self._loaded.discard(name)

    def point_alias(self, name: str) -> None:
        live = self.live_collection()
        if live is None:
            self.client.create_alias(name, self.alias)
        elif live != name:
            self.client.alter_alias(name, self.alias)

    def collections(self) -> list[str]:
        return [c for c in self.client.list_collections() if c.startswith("adrag_")]

    # -- rows ----------------------------------------------------------------------------

    def upsert(self, name: str, rows: list[dict]) -> int:
        """Upsert rows of image_id, path, labels (dict), vector and optional words (OCR)."""
        if not rows:
            return 0
        data = [
            {k: v for k, v in r.items() if k != "words"}
            | {"text": labels_text(r["labels"], r.get("words", ""))}
            for r in rows
        ]
        return int(self.client.upsert(name, data).get("upsert_count", len(rows)))

    def delete(self, name: str, ids: list[str]) -> int:
        if not ids:
            return 0
        self.client.delete(name, ids=list(ids))
        return len(ids)

    def flush(self, name: str) -> None:
        """Seal the rows written since the last flush into a segment with its indexes.

        Milvus Lite 3 keeps unflushed rows (up to 128 MB: ~40,000 photos at 512 dimensions) in
        a memtable that every search scans in Python: BM25's inverted index rebuilt, filters
        evaluated row by row, vectors brute-forced. At 20,000 unflushed photos a search took
        2 s; flushed, 15 ms (``bench/hybrid_scale.py``)."""
        self.client.flush(name)

    def count(self, name: str | None = None) -> int:
        name = name or self.live_collection()
        if name is None or not self.client.has_collection(name):
            return 0
        res = self.client.query(self.load(name), filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def iter_ids(self, name: str, batch_size: int = 4096) -> Iterator[list[str]]:
        """Every image_id in a collection, in batches, streamed with a query iterator."""
        it = self.client.query_iterator(
            self.load(name), batch_size=batch_size, filter="", output_fields=["image_id"]
        )
        try:
            while batch := it.next():
                yield [r["image_id"] for r in batch]
        except MilvusException as e:
            raise _translate(e, self.shown_uri) from e
        finally:
            it.close()

    def ids(self, name: str) -> set[str]:
        """Every image_id in a collection, as one set (fine for tests and small indexes)."""
        return {i for batch in self.iter_ids(name) for i in batch}

    def probe(self, name: str) -> None:
        """Read a collection's description and row count, if it exists; MilvusError when it
        cannot."""
        if self.client.has_collection(name):
            self.client.describe_collection(name)
            self.count(name)

    def label_counts(
        self, name: str | None = None, max_values: int = 1000
    ) -> dict[str, dict[str, int]]:
        """``{label: {value: photos}}`` over a collection (default: the live one): what the
        library holds, e.g. its breeds. Only string values count; each label keeps its
        ``max_values`` most frequent values. Read in the same id-prefix slices as :meth:`ids`.
        """
        name = name or self.live_collection()
        if name is None or not self.client.has_collection(name):
            return {}
        total = self.count(name)
        digits = 0
        while total / 16**digits > QUERY_LIMIT // 2:
            digits += 1
        counts: dict[str, dict[str, int]] = {}
        for i in range(16**digits):
            prefix = f"{i:0{digits}x}" if digits else ""
            rows = self.client.query(
                name,
                filter=f'image_id like "{prefix}%"',
                output_fields=["labels"],
                limit=QUERY_LIMIT,
            )
            for row in rows:
                for key, value in dict(row.get("labels") or {}).items():
                    if isinstance(value, str) and value.strip():
                        column = counts.setdefault(str(key), {})
                        column[value] = column.get(value, 0) + 1
        return {
            key: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:max_values])
            for key, values in counts.items()
        }

    def vectors(self, name: str, ids: list[str]) -> dict[str, list[float]]:
        rows = self.client.get(self.load(name), ids=list(ids), output_fields=["vector"])
        return {r["image_id"]: r["vector"] for r in rows}

    def iter_vectors(self, name: str, batch_size: int = 1024) -> Iterator[list[dict]]:
        """Every row's ``image_id``, ``path`` and ``vector``, in batches (a query iterator)."""
        it = self.client.query_iterator(
            self.load(name),
            batch_size=batch_size,
            filter="",
            output_fields=["image_id", "path", "vector"],
        )
        try:
            while batch := it.next():
                yield batch
        except MilvusException as e:
            raise _translate(e, self.shown_uri) from e
        finally:
            it.close()

    # -- search --------------------------------------------------------------------------

    def search_within(
        self, name: str, vectors: list[list[float]], radius: float, limit: int
    ) -> list[list[tuple[str, float]]]:
        """Range search: per query vector, up to ``limit`` ``(image_id, cosine)`` with cosine
        above ``radius``, best first (the query's own row included)."""
        res = self.client.search(
            self.load(name),
            data=vectors,
            anns_field="vector",
            limit=limit,
            # COSINE range search keeps radius < score <= range_filter; a unit vector's
            # cosine with itself can round to a hair above 1.
            search_params={
                "metric_type": "COSINE",
                "params": {"ef": max(64, limit), "radius": radius, "range_filter": 1.0001},
            },
        )
        return [[(h.get("image_id") or h["id"], float(h["distance"])) for h in q] for q in res]

    def search_dense(self, name: str, vector: list[float], k: int, filter: str = "") -> list[Hit]:
        res = self.client.search(
            self.load(name),
            data=[vector],
            anns_field="vector",
            limit=k,
            filter=filter,
            output_fields=["path", "labels"],
            search_params={"metric_type": "COSINE", "params": {"ef": max(64, k)}},
        )
        return _hits(res[0])

    def search_text(self, name: str, text: str, k: int, filter: str = "") -> list[Hit]:
        """BM25 alone over the labels/captions text: photos sharing a word with ``text``, with
        their BM25 score (positive; Milvus Lite reports it negated, as a distance)."""
        res = self.client.search(
            self.load(name),
            data=[text],
            anns_field="sparse",
            limit=k,
            filter=filter,
            output_fields=["path", "labels"],
            search_params={"metric_type": "BM25"},
        )
        return _hits([{**h, "distance": abs(float(h["distance"]))} for h in res[0]])

    def search_hybrid(
        self,
        name: str,
        vector: list[float],
        text: str,
        k: int,
        filter: str = "",
        ranker: str = "weighted",
        weights: tuple[float, float] = (0.5, 0.5),
        candidates: int = 50,
        text_hits: list[Hit] | None = None,
    ) -> list[Hit]:
        """Fuse the CLIP ranking with BM25 over the labels/captions text.

        ``weighted`` mixes normalised scores (``weights`` = dense, text); ``rrf`` fuses ranks
        only. Each side proposes ``candidates`` hits before fusion; the filter applies to both.
        ``text_hits``: BM25's top ``candidates`` hits (or all there are) for ``text`` under
        ``filter``, already fetched (the relevance floor's probe). ``text`` "" (only stop
        words): the dense side alone.
        """
        candidates = max(candidates, k)
        if ranker == "rrf":
            dense = {"metric_type": "COSINE", "params": {"ef": max(64, candidates)}}
            reqs = [AnnSearchRequest([vector], "vector", dense, candidates, filter=filter or None)]
            if text:
                bm25 = {"metric_type": "BM25"}
                reqs.append(
                    AnnSearchRequest([text], "sparse", bm25, candidates, filter=filter or None)
                )
            res = self.client.hybrid_search(
                self.load(name), reqs, RRFRanker(60), limit=k, output_fields=["path", "labels"]
            )
            return _hits(res[0])
        # Milvus's WeightedRanker, in Python (measured identical on Milvus Lite 3.2): the same
        # two searches, and BM25's may be the one the relevance floor already made.
        if text_hits is None:
            text_hits = self.search_text(name, text, candidates, filter) if text else []
        return fuse_weighted(
            self.search_dense(name, vector, candidates, filter), text_hits[:candidates], weights, k
        )


def fuse_weighted(
    dense: list[Hit], text: list[Hit], weights: tuple[float, float], k: int
) -> list[Hit]:
    """The top-``k`` of Milvus's WeightedRanker over a dense (COSINE) and a BM25 ranking: a
    cosine counts (1 + s) / 2, a BM25 score 2 atan(s) / pi, each times its side's weight; a
    photo missing from one side gets nothing from it."""
    scores: dict[str, float] = {}
    rows: dict[str, Hit] = {}
    for hits, weight, norm in (
        (dense, weights[0], lambda s: (1.0 + s) / 2.0),
        (text, weights[1], lambda s: 2.0 * math.atan(s) / math.pi),
    ):
        for h in hits:
            scores[h.image_id] = scores.get(h.image_id, 0.0) + weight * norm(h.score)
            rows.setdefault(h.image_id, h)
    fused = [Hit(i, rows[i].path, s, rows[i].labels) for i, s in scores.items()]
    return sorted(fused, key=lambda h: (-h.score, h.image_id))[:k]


def _hits(rows: list[dict]) -> list[Hit]:
    # Ties (equal fused scores are common with BM25) are broken by id: same query, same list.
    hits = [
        Hit(
            h.get("image_id") or h["id"],
            h["entity"]["path"],
            float(h["distance"]),
            _labels(h["entity"]["labels"]),
        )
        for h in rows
    ]
    return sorted(hits, key=lambda h: (-h.score, h.image_id))


def _labels(v) -> dict:
    return json.loads(v) if isinstance(v, str) else dict(v or {})
