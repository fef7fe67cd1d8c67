"""The Delta tables adrag keeps, their schemas, and the few write patterns they need.

Every write is an upsert (``merge``) or a delete by key, so any step can be re-run after a
crash: nothing is duplicated and nothing is lost. ``images`` and ``image_embeddings`` keep
Delta's change data feed on, which is how the embeddings and the Milvus index sync only what
changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

TS = pa.timestamp("us", tz="UTC")

IMAGES = pa.schema(
    [
        ("image_id", pa.string()),  # sha256 of the bytes
        ("path", pa.string()),  # relative to the volume; one of its paths if several (sync.py)
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("size", pa.int64()),
        ("mtime", TS),
        # Labels before ``photo_labels`` took them (kept as the old rows have them, never read
        # but to fill ``photo_labels`` once; null in new rows). Delta cannot drop a column
        # without rewriting every file, renditions and all: the very cost labels now avoid.
        ("labels", pa.string()),
        # The original's bytes: only with ADRAG_STORE_ORIGINALS=on (and in rows written before
        # renditions); otherwise null, the original staying in the volume at ``path``.
        ("bytes", pa.binary()),
        ("ingested_at", TS),
        # What the model reads: the upright photo, long side <= ADRAG_RENDITION_PX (decode.py).
        # Null only in rows written before renditions, which still carry ``bytes``.
        ("rendition", pa.binary()),
        ("taken_at", pa.timestamp("us")),  # EXIF, the camera's own clock (no time zone)
        ("camera_make", pa.string()),
        ("camera_model", pa.string()),
        # EXIF holds a GPS position (null: ingested before this was recorded). Only whether:
        # a photo's whereabouts are not something an ad library needs to keep.
        ("has_gps", pa.bool_()),
    ]
)

# One row per photo file; lets an unchanged file be skipped after a stat.
VOLUME_FILES = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("image_id", pa.string()),
    ]
)
REJECTED = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("reason", pa.string()),
        ("rejected_at", TS),
    ]
)
EMBEDDINGS = pa.schema(
    [
        ("image_id", pa.string()),
        ("encoder_id", pa.string()),
        ("path", pa.string()),
        ("labels", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("embedded_at", TS),
        # The decode and model code version the vector was made with (null: before it was
        # recorded); see adrag_assets/embeddings/versions.py.
        ("embed_version", pa.string()),
    ]
)

# The labels of each photo (sidecars, labels.csv), apart from its bytes: a relabel merges this
# small table only, and its change feed tells the embeddings which rows' labels changed.
PHOTO_LABELS = pa.schema(
    [
        ("image_id", pa.string()),
        ("labels", pa.string()),  # a JSON object, keys sorted
    ]
)

# Words read in a photo (its rendition) by OCR: one row per photo and OCR version
# (adrag_assets/images/ocr.py); the index adds them to the photo's BM25 text.
PHOTO_TEXT = pa.schema(
    [
        ("image_id", pa.string()),
        ("text", pa.string()),  # the words read, space-separated ("" when none)
        ("boxes", pa.int32()),  # text lines kept
        ("ocr_version", pa.string()),
        ("read_at", TS),
    ]
)
# What people decided about a photo (the duplicate review): one row per decision; the last
# decision per photo counts. "archive" takes it out of search and generation, "restore"
# undoes that, "keep" records that it was looked at and stays.
PHOTO_REVIEWS = pa.schema(
    [
        ("image_id", pa.string()),
        ("action", pa.string()),
        ("user", pa.string()),
        ("at", TS),
    ]
)

CDF = {"delta.enableChangeDataFeed": "true"}
TABLES = {
    "images": (IMAGES, CDF),
    "photo_labels": (PHOTO_LABELS, CDF),
    "volume_files": (VOLUME_FILES, {}),
    "rejected_images": (REJECTED, {}),
    "image_embeddings": (EMBEDDINGS, CDF),
    "photo_text": (PHOTO_TEXT, CDF),
    "photo_reviews": (PHOTO_REVIEWS, {}),
}


class TablesUnavailable(OSError):
    """The tables' store cannot be used (missing bucket, credentials refused): one line."""


class TableUnreadable(TablesUnavailable):
    """One table exists but cannot be opened (a damaged log entry): one line naming the table
    and how to recover."""


class Tables:
    """The tables under one root (a folder or an ``s3://`` / ``gs://`` URL), created empty on
    first use. ``storage_options`` are deltalake's, e.g. from a dagster-deltalake storage
    config (``S3Config().str_dict()``); credentials and endpoint not given there are read by
    deltalake itself from the provider's standard variables (``AWS_*``)."""

    def __init__(self, root: str | Path, storage_options: dict[str, str] | None = None):
        self.root = str(root).rstrip("/")
        # "provider" only tells dagster-deltalake's config types apart; deltalake wants the rest.
        options = {k: v for k, v in (storage_options or {}).items() if k != "provider"}
        if self.root.startswith(("s3://", "s3a://")):
            # S3 has no atomic rename: without conditional puts two commits of the same
            # version could both "succeed". With ETag conditions the loser gets a conflict.
            options.setdefault("conditional_put", "etag")
        self.storage_options = options or None

    def check(self) -> None:
        """Raise :class:`TablesUnavailable` (one line naming the store) unless the tables'
        root can be read: a wrong bucket or key should say so before any work starts."""
        if "://" not in self.root:
            for name in TABLES:  # a damaged log should stop a command before it starts
                if self.exists(name):
                    self.open(name)
            return
        try:
            # is_deltatable alone answers False for a missing bucket; opening says why.
            if self.exists("images"):
                self.open("images")
            else:
                DeltaTable(self.uri("images"), storage_options=self.storage_options)
        except TableNotFoundError:
            return  # a reachable store without the table yet: created on first write
        except Exception as e:
            text = str(e)
            bucket = self.root.split("://", 1)[1].split("/", 1)[0]
            where = f"the tables at {self.root} (bucket {bucket!r})"
            if "NoSuchBucket" in text:
                reason = "the bucket does not exist; create it or fix ADRAG_TABLES"
            elif any(m in text for m in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch")):
                reason = "access denied; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            else:
                reason = f"cannot be read ({type(e).__name__}); check the endpoint and bucket"
            raise TablesUnavailable(f"{where}: {reason}") from e

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def open(self, name: str) -> DeltaTable:
        """The table, created empty when it does not exist; :class:`TableUnreadable` when it
        exists and cannot be opened."""
        try:
            return DeltaTable(self.uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            schema, config = TABLES[name]
            if "://" not in self.root:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            write_deltalake(
                self.uri(name),
                schema.empty_table(),
                configuration=config or None,
                storage_options=self.storage_options,
            )
            return DeltaTable(self.uri(name), storage_options=self.storage_options)
        except DeltaError as e:
            raise TableUnreadable(self.unreadable(name, e)) from e

    def unreadable(self, name: str, error: Exception) -> str:
        """One line: which table, why (deltalake appends a Rust backtrace: cut) and how to
        recover. Restoring the log from a backup keeps everything; so does a rebuild from the
        volume, which every table is derived from. Moving only the bad entry aside is not
        advised: ``images`` would lose that commit's rows while ``volume_files`` still lists
        their files as read, so they would not come back."""
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        bad = self._bad_log_entries(name)
        culprit = f"; not valid JSON: {', '.join(bad[:3])}" if bad else ""
        return (
            f"the Delta table {name!r} at {self.uri(name)} cannot be opened ({why}{culprit}). "
            f"Restore its _delta_log from a backup, or rebuild every table from the volume: "
            f"move {self.root} aside (or point ADRAG_TABLES elsewhere) and run `adrag ingest` "
            "(every photo is read and embedded again; the index follows)"
        )

    def _bad_log_entries(self, name: str) -> list[str]:
        """The log entries of a local table that are not JSON lines (where a torn or
        overwritten commit shows); [] for object stores, not listed on an error path."""
        log = Path(self.uri(name)) / "_delta_log"
        if "://" in self.root or not log.is_dir():
            return []
        bad = []
        for entry in sorted(log.glob("*.json")):
            try:
                for line in entry.read_text("utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
            except (OSError, ValueError):
                bad.append(f"_delta_log/{entry.name}")
        return bad

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.storage_options)

    def ensure_configuration(self, name: str) -> bool:
        """Give an existing table the properties :data:`TABLES` wants (e.g. the change feed
        on a table created before it was); True when that took a commit."""
        dt = self.open(name)
        want = TABLES[name][1]
        have = dt.metadata().configuration
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        if missing:
            dt.alter.set_table_properties(missing, raise_if_not_exists=False)
        return bool(missing)

    def ensure_columns(self, name: str) -> bool:
        """Give an existing table the columns its schema gained since it was made (null in
        the old rows): an in-place schema change, no row rewritten. True when that took a
        commit."""
        from deltalake import Field

        dt = self.open(name)
        have = set(dt.schema().to_arrow().names)
        missing = [f for f in TABLES[name][0] if f.name not in have]
        if missing:
            dt.alter.add_columns([Field.from_arrow(f.with_nullable(True)) for f in missing])
        return bool(missing)

    def properties(self, name: str) -> dict[str, str]:
        return dict(self.open(name).metadata().configuration)

    def set_properties(self, name: str, properties: dict[str, str]) -> None:
        """Set table properties in one commit (adrag's own keys start with ``adrag.``)."""
        self.open(name).alter.set_table_properties(properties, raise_if_not_exists=False)

    def count_equal(self, name: str, column: str, value: str) -> int:
        """Rows where ``column`` = ``value``: from the files' statistics in the Delta log when
        every file holds one value only (as adrag writes them), else a count query. Long
        values are counted by query: the log keeps string statistics cut short."""
        if not self.exists(name):
            return 0
        actions = pa.table(self.open(name).get_add_actions(flatten=True))
        lo, hi = f"min.{column}", f"max.{column}"
        if actions.num_rows == 0:
            return 0
        if len(value.encode()) < 32 and {lo, hi} <= set(actions.column_names):
            rows = actions.select(["num_records", lo, hi]).to_pylist()
            if all(r[lo] == r[hi] and r[lo] is not None for r in rows):
                return sum(r["num_records"] for r in rows if r[lo] == value)
        quoted = value.replace("'", "''")
        return self.count(name, f"{column} = '{quoted}'")

    def query(self, name: str, sql: str, also: Iterable[str] = ()) -> pa.RecordBatchReader:
        """Stream the result of ``sql`` over table ``name`` (referred to by that name), and
        the tables named in ``also`` (for joins).

        Reads go through deltalake's own engine rather than a pyarrow dataset: pyarrow's
        scanner threads can outlive a short process and abort it at exit.
        """
        qb = QueryBuilder().register(name, self.open(name))
        for other in also:
            qb = qb.register(other, self.open(other))
        return pa.RecordBatchReader.from_stream(qb.execute(sql))

    def read(self, name: str, columns: list[str], where: str | None = None) -> pa.Table:
        schema = TABLES[name][0]
        schema = pa.schema([schema.field(c) for c in columns])
        if not self.exists(name):
            return schema.empty_table()
        sql = f"SELECT {', '.join(columns)} FROM {name}" + (f" WHERE {where}" if where else "")
        return self.query(name, sql).read_all().cast(schema)

    def count(self, name: str, where: str | None = None) -> int:
        if not self.exists(name):
            return 0
        sql = f"SELECT COUNT(*) AS n FROM {name}" + (f" WHERE {where}" if where else "")
        return int(self.query(name, sql).read_all().column("n")[0].as_py())

    def version(self, name: str) -> int:
        return self.open(name).version()

    def upsert(
        self, name: str, rows: pa.Table, keys: Iterable[str], update_when: str | None = None
    ) -> dict:
        """Insert new keys; update matched rows (all columns) where ``update_when`` holds.

        ``update_when`` is a predicate on ``t`` (target) and ``s`` (source); None updates
        every match. Rows that would not change are left alone, so the change feed only
        shows real changes.
        """
        if rows.num_rows == 0:
            return {}
        schema = TABLES[name][0]
        rows = rows.select(schema.names).cast(schema)
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        return (
            self.open(name)
            .merge(rows, predicate=on, source_alias="s", target_alias="t")
            .when_matched_update_all(predicate=update_when)
            .when_not_matched_insert_all()
            .execute()
        )

    def update_columns(
        self, name: str, rows: pa.Table, keys: Iterable[str], columns: list[str]
    ) -> int:
        """Set ``columns`` from ``rows`` on the rows matching ``keys``; returns rows changed."""
        if rows.num_rows == 0:
            return 0
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        changed = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in columns)
        res = (
            self.open(name)
            .merge(rows, predicate=on, source_alias="s", target_alias="t")
            .when_matched_update(updates={c: f"s.{c}" for c in columns}, predicate=changed)
            .execute()
        )
        return int(res.get("num_target_rows_updated", 0))

    def delete_keys(self, name: str, key: str, values: Iterable[str], chunk: int = 500) -> int:
        """Delete the rows whose ``key`` is in ``values``; returns how many were deleted."""
        values = sorted(set(values))
        deleted = 0
        for i in range(0, len(values), chunk):
            part = values[i : i + chunk]
            quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in part)
            res = self.open(name).delete(f"{key} IN ({quoted})")
            deleted += int(res.get("num_deleted_rows", 0))
        return deleted
