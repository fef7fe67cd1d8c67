"""Embedding on a Ray cluster, for big backfills (``ADRAG_RAY_ADDRESS``, README "Big backfills
on Ray").

:func:`~adrag_assets.embeddings.sync.sync_embeddings` decides which images need a vector,
exactly as it does in-process, and hands their ids to :meth:`RayEmbedder.embed`. A Ray Data
pipeline reads the ``images`` table at the version being synced, in blocks (``read_delta``:
the rendition, or the stored bytes of rows from before renditions), keeps the wanted rows in
the read tasks, and sends them through ``map_batches`` to a fixed pool of encoder actors (one
GPU each where the cluster has GPUs, else one CPU). Vectors stream back with
``iter_batches``; this process stays the only writer to Delta: it checks them and upserts
them by (image_id, encoder_id) as the in-process path does, so a block that Ray retries after
an actor died adds no duplicate, and a run that fails is redone by the next one.

Ray is imported here only, and this module only when a Ray address is configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adrag_assets.embeddings.sync import WRITE_EVERY, _check_vectors, labels_of
from adrag_assets.embeddings.versions import EMBED_VERSION
from adrag_assets.tables import EMBEDDINGS, TS, Tables

if TYPE_CHECKING:
    import ray.data

    from adrag_assets.embeddings.progress import Progress
    from adrag_assets.embeddings.sync import EmbedStats

# What an encoder actor hands back per photo: a vector, or why it has none.
RESULT = pa.schema(
    [
        ("image_id", pa.string()),
        ("path", pa.string()),
        ("labels", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class RayEmbedder:
    """How ``image_embeddings`` embeds on Ray: the encoder each actor loads, the pool's size,
    and the fewest photos worth a cluster. ``connect`` joins the cluster on first use (in
    Dagster, dagster-ray's resource does); without it, ``ray.init`` must have been called."""

    encoder_spec: str
    precision: str = "auto"
    batch_size: int = 32
    actors: int = 2
    min_images: int = 0
    connect: Callable[[], object] = field(default=lambda: None, repr=False)
    write_every: int = WRITE_EVERY  # rows per Delta commit, as in-process

    def takes(self, todo: int) -> bool:
        return todo > 0 and todo >= self.min_images

    def embed(
        self,
        tables: Tables,
        encoder_id: str,
        ids: Iterable[list[str]],
        images_version: int,
        stats: EmbedStats,
        log: logging.Logger,
        progress: Progress | None = None,
    ) -> None:
        """Embed ``ids`` (chunks of image ids) read from ``images`` at ``images_version``;
        upsert their rows into ``image_embeddings`` as they come back, telling ``progress``
        at each commit."""
        wanted = pa.array(sorted({i for chunk in ids for i in chunk}), pa.string())
        if not len(wanted):
            return
        started = time.perf_counter()
        labels = labels_of(tables, wanted.to_pylist())  # photo_labels, not images' old column
        self.connect()
        ds, where = self.pipeline(tables, wanted, images_version)
        log.info("embeddings: %d images on Ray, %s", len(wanted), where)
        stats.embedded_on = f"Ray: {where}"
        seen: set[str] = set()
        pending: list[pa.Table] = []
        done = 0

        def flush() -> None:
            if pending:
                tables.upsert("image_embeddings", pa.concat_tables(pending), EMBEDDINGS_KEY)
                pending.clear()
                if progress is not None:
                    progress.commit()

        for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            out = out.cast(RESULT)
            # A block Ray ran again (its actor died after handing back part of it) repeats
            # ids: the first vector of each is kept.
            ids_out = out.column("image_id").to_pylist()
            first = [k for k, i in enumerate(ids_out) if i not in seen and not seen.add(i)]
            out = out.take(pa.array(first, pa.int64()))
            failed = pc.is_valid(out.column("error"))
            for msg in pc.filter(out.column("error"), failed).to_pylist():
                log.warning(msg)
            stats.failed += pc.sum(failed).as_py() or 0
            good = out.filter(pc.invert(failed))
            if good.num_rows:
                vectors = np.asarray(
                    good.column("embedding").combine_chunks().flatten(), np.float32
                ).reshape(good.num_rows, -1)
                _check_vectors(vectors, good.column("image_id").to_pylist(), stats)
                pending.append(_rows(good, encoder_id, labels))
                stats.embedded += good.num_rows
            done += out.num_rows
            if progress is not None:
                progress.advance(out.num_rows)
            if sum(t.num_rows for t in pending) >= self.write_every:
                flush()
                log.info("embedded %d/%d images on Ray", done, len(wanted))
        flush()
        stats.seconds += time.perf_counter() - started
        if done < len(wanted):
            # Ray said it finished, so this is no photo's fault: fail the run before the sync
            # record moves on, and the next run embeds what is missing.
            raise RuntimeError(f"Ray handed back {done} of {len(wanted)} images to embed")

    def pipeline(
        self, tables: Tables, wanted: pa.Array, version: int
    ) -> tuple[ray.data.Dataset, str]:
        """The Ray Data pipeline (not yet run) and where its actors run, in words."""
        import ray
        import ray.data

        gpus = ray.cluster_resources().get("GPU", 0) > 0
        images = tables.uri("images")
        readers = max(2, self.actors // 4)
        ds = ray.data.read_delta(
            images,
            version=version,
            storage_options=tables.storage_options,
            columns=["image_id", "path", "labels", "rendition", "bytes"],
            # Reading is light next to the model: it must not wait for the CPUs the actors
            # hold for the whole run, and a few tasks at a time keep up with them.
            num_cpus=0,
            concurrency=readers,
        )
        ds = ds.map_batches(
            _keep_wanted,
            fn_kwargs={"wanted": ray.put(wanted)},
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=readers),
        )
        ds = ds.map_batches(
            _Encode,
            fn_constructor_kwargs={
                "spec": self.encoder_spec,
                "precision": self.precision,
                "device": "cuda" if gpus else "cpu",
            },
            batch_size=self.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=1,
            num_gpus=1 if gpus else 0,
        )
        where = f"{self.actors} encoder actors ({'1 GPU' if gpus else '1 CPU'} each)"
        return ds, where


EMBEDDINGS_KEY = ["image_id", "encoder_id"]


def _rows(good: pa.Table, encoder_id: str, labels: dict[str, str]) -> pa.Table:
    n = good.num_rows
    ids = good.column("image_id").to_pylist()
    return pa.table(
        {
            "image_id": good.column("image_id"),
            "encoder_id": pa.array([encoder_id] * n, pa.string()),
            "path": good.column("path"),
            "labels": pa.array([labels.get(i) for i in ids], pa.string()),
            "embedding": good.column("embedding"),
            "embedded_at": pa.array([datetime.now(UTC)] * n, TS),
            "embed_version": pa.array([EMBED_VERSION] * n, pa.string()),
        },
        schema=EMBEDDINGS,
    )


def _keep_wanted(batch: pa.Table, wanted: object) -> pa.Table:
    """The rows of ``batch`` whose image is to be embedded, with the picture the model reads
    as ``bytes`` (the rendition, else a row's stored original from before renditions)."""
    import ray

    if isinstance(wanted, ray.ObjectRef):
        wanted = ray.get(wanted)
    ids = batch.column("image_id").cast(pa.string())
    batch = batch.filter(pc.is_in(ids, value_set=wanted))
    picture = pc.coalesce(
        batch.column("rendition").cast(pa.binary()), batch.column("bytes").cast(pa.binary())
    )
    return pa.table(
        {
            "image_id": batch.column("image_id").cast(pa.string()),
            "path": batch.column("path").cast(pa.string()),
            "labels": batch.column("labels").cast(pa.string()),
            "bytes": picture,
        }
    )


class _Encode:
    """One encoder actor: loads the model once, then decodes and encodes batch after batch
    with the same code as in-process (:func:`~adrag_assets.embeddings.pipeline.encode_stream`)."""

    def __init__(self, spec: str, precision: str, device: str) -> None:
        from adrag_assets.embeddings.encoder import load_encoder

        self.encoder = load_encoder(spec, precision, device)

    def __call__(self, batch: pa.Table) -> pa.Table:
        # The module, not the function: a test's fault hook replaces it in the worker.
        from adrag_assets.embeddings import pipeline

        rows = batch.to_pylist()
        out = []
        for part in pipeline.encode_stream(self.encoder, rows, max(1, len(rows)), workers=1):
            out += [
                {**r, "embedding": v, "error": None}
                for r, v in zip(part.rows, part.vectors, strict=True)
            ]
            out += [
                {
                    "image_id": r["image_id"],
                    "path": None,
                    "labels": None,
                    "embedding": None,
                    "error": f"{r['path']}: cannot decode for the model ({why})",
                }
                for r, why in part.failures
            ]
        return pa.Table.from_pylist(out, RESULT)
