"""The asset graph: raw photos -> images -> image_embeddings -> image_index.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)

Each asset is a thin shell over a plain function (:mod:`ingest`, :mod:`embed`,
:mod:`index_sync`) that does the work and returns counts; the asset turns them into
metadata and runs its checks on the result it just wrote.
"""

import dataclasses

import dagster as dg

from adrag_assets import checks
from adrag_assets.embed import embedding_matrix, sync_embeddings
from adrag_assets.encoder import ENCODER_CODE_VERSION, EncoderError, EncoderSpec
from adrag_assets.index_sync import activate, sync_index
from adrag_assets.ingest import sync_images
from adrag_assets.resources import EncoderResource, MilvusResource, TablesResource, VolumeResource
from adrag_assets.settings import load_settings
from adrag_assets.thumbnails import thumbnail_markdown

GROUP = "photo_index"


def encoder_code_version() -> str:
    """The configured encoder's id as a code version: a new model makes embeddings stale."""
    spec = load_settings().encoder
    try:
        return f"{EncoderSpec.parse(spec).encoder_id}|code-v{ENCODER_CODE_VERSION}"
    except EncoderError:
        return spec  # the run will fail with the clear error; the code location still loads


ENCODER_VERSION = encoder_code_version()
THUMBNAILS = 6

raw_photos = dg.AssetSpec(
    "raw_photos",
    group_name=GROUP,
    description="Photos people upload to raw/ in the storage volume (any depth), with their "
    "labels.csv and .json/.txt sidecars. Not materialized by Dagster: it is the source.",
    kinds={"files"},
)


POOL = "adrag_index"  # every writer of the tables/collection; limit 1 in dagster.yaml


@dg.multi_asset(
    pool=POOL,
    specs=[
        dg.AssetSpec(
            "images",
            deps=[raw_photos],
            group_name=GROUP,
            description="Delta table: one row per distinct photo (image_id = sha256 of the "
            "bytes), with path, bytes, format, size, dimensions, mtime and labels.",
            kinds={"delta"},
        ),
        dg.AssetSpec(
            "rejected_images",
            deps=[raw_photos],
            group_name=GROUP,
            description="Delta table: files under raw/ that are not usable photos, with the "
            "reason (corrupt, truncated, empty, not an image).",
            kinds={"delta"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "every_file_accounted_for",
            asset="images",
            description="Every file under raw/ is an image, a rejected file or a sidecar.",
        )
    ],
)
def images(context: dg.AssetExecutionContext, volume: VolumeResource, tables: TablesResource):
    t = tables.get()
    stats = sync_images(volume.path, t, log=context.log)
    # Only the newest few rows' bytes are read for thumbnails, never the whole table.
    newest = f"SELECT path, bytes FROM images ORDER BY ingested_at DESC, path LIMIT {THUMBNAILS}"
    added = t.query("images", newest).read_all() if stats.added else None
    meta = {
        "files": stats.files,
        "files_read": stats.files_read,
        "added": stats.added,
        "updated": stats.updated,
        "deleted": stats.deleted,
        "unchanged": stats.unchanged,
        "rejected": stats.rejected,
        "newly_rejected": stats.newly_rejected,
        "dagster/row_count": stats.images,
        "delta_version": stats.version,
        "dagster/uri": t.uri("images"),
    }
    if added is not None:
        meta["sample"] = thumbnail_markdown(
            list(
                zip(
                    added.column("path").to_pylist(), added.column("bytes").to_pylist(), strict=True
                )
            )
        )
    context.log.info(
        "images: %d added, %d updated, %d deleted, %d unchanged, %d rejected in total",
        stats.added,
        stats.updated,
        stats.deleted,
        stats.unchanged,
        stats.rejected,
    )
    yield dg.MaterializeResult(asset_key="images", metadata=meta)
    yield dg.MaterializeResult(
        asset_key="rejected_images",
        metadata={
            "dagster/row_count": stats.rejected,
            "newly_rejected": stats.newly_rejected,
            "rejected": dg.MetadataValue.md(checks.rejected_markdown(t)),
        },
    )
    yield checks.coverage(volume.path, t)


@dg.asset(
    deps=["images"],
    pool=POOL,
    code_version=ENCODER_VERSION,
    # Re-embed on its own when the encoder changes, or when new images arrive outside a
    # sensor run (e.g. `images` materialized by hand).
    automation_condition=dg.AutomationCondition.eager()
    | dg.AutomationCondition.code_version_changed(),
    group_name=GROUP,
    kinds={"delta", "pytorch"},
    description="Delta table: a CLIP vector per image and encoder (image_id, encoder_id, path, "
    "labels, embedding). Only images new to the configured encoder are embedded.",
    check_specs=[
        dg.AssetCheckSpec("vectors_finite_and_unit_norm", asset="image_embeddings"),
    ],
)
def image_embeddings(
    context: dg.AssetExecutionContext, tables: TablesResource, encoder: EncoderResource
) -> dg.MaterializeResult:
    enc = encoder.get()
    if enc.is_random:
        context.log.warning("encoder %s", enc.label)
    t = tables.get()
    stats = sync_embeddings(t, enc, encoder.batch_size, log=context.log)
    ids, matrix = embedding_matrix(t, enc.encoder_id)
    return dg.MaterializeResult(
        metadata={
            "encoder_id": enc.encoder_id,
            "encoder": enc.label,
            "precision": enc.precision,
            "dim": enc.dim,
            "embedded": stats.embedded,
            "updated": stats.updated,
            "deleted": stats.deleted,
            "unchanged": stats.unchanged,
            "failed": stats.failed,
            "images_per_s": round(stats.images_per_s, 2),
            "dagster/row_count": stats.rows,
            "delta_version": stats.version,
            "dagster/uri": t.uri("image_embeddings"),
        },
        check_results=[checks.unit_vectors(matrix, ids)],
    )


@dg.asset(
    deps=["image_embeddings"],
    pool=POOL,
    code_version=ENCODER_VERSION,
    automation_condition=dg.AutomationCondition.eager()
    | dg.AutomationCondition.code_version_changed(),
    group_name=GROUP,
    kinds={"milvus"},
    description="Milvus collection of the configured encoder's vectors, synced from "
    "image_embeddings' change feed; the alias names the live collection.",
    check_specs=[dg.AssetCheckSpec("index_matches_embeddings", asset="image_index")],
)
def image_index(
    context: dg.AssetExecutionContext,
    tables: TablesResource,
    encoder: EncoderResource,
    milvus: MilvusResource,
) -> dg.MaterializeResult:
    enc = encoder.get()
    t, index = tables.get(), milvus.get()
    stats = sync_index(t, index, enc.encoder_id, encoder.spec, enc.dim, log=context.log)
    check = checks.index_matches(t, index, stats.collection, enc.encoder_id)
    live_before = index.live_collection()
    dropped: list[str] = []
    if check.passed:
        dropped = activate(index, stats.collection, milvus.keep_old_collections)
        if live_before not in (None, stats.collection):
            context.log.info(
                "alias %s moved from %s to %s", index.alias, live_before, stats.collection
            )
    else:
        context.log.error(
            "index check failed: alias %s stays on %s", index.alias, live_before or "nothing"
        )
    return dg.MaterializeResult(
        metadata={
            "collection": stats.collection,
            "alias": index.alias,
            "encoder_id": enc.encoder_id,
            "encoder": enc.label,
            "mode": stats.mode,
            "upserted": stats.upserted,
            "deleted": stats.deleted,
            "dagster/row_count": stats.rows,
            "synced_delta_version": stats.synced_version,
            "live_collection": index.live_collection() or "",
            "dropped_collections": dg.MetadataValue.json(dropped),
            "milvus_uri": index.shown_uri,
        },
        check_results=[check],
    )


@dg.asset(
    group_name=GROUP,
    code_version=ENCODER_VERSION,
    kinds={"mlflow"},
    description="The configured encoder registered in the local MLflow registry as the pyfunc "
    "model adrag-encoder (base64 image or text in, unit vector out), one version per encoder.",
)
def encoder_model(
    context: dg.AssetExecutionContext, encoder: EncoderResource
) -> dg.MaterializeResult:
    from adrag_assets.encoder_pyfunc import register_encoder

    settings = dataclasses.replace(load_settings(), encoder=encoder.spec)
    reg = register_encoder(settings)
    if reg.random_weights:
        context.log.warning(
            "registered encoder %s has random weights (NOT semantic)", reg.encoder_id
        )
    return dg.MaterializeResult(
        metadata={
            "model_name": reg.name,
            "version": reg.version,
            "model_uri": reg.model_uri,
            "encoder_id": reg.encoder_id,
            "random_weights": reg.random_weights,
        }
    )
