"""Dagster resources: the volume, the Delta tables, the encoder, the Milvus index and the Ray
cluster big backfills embed on.

Their defaults come from :mod:`adrag_assets.settings` (the ``ADRAG_*`` variables), so the
Dagster UI, the daemon and the CLI agree; a run can still override any field in its config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_deltalake import AzureConfig, GcsConfig, LocalConfig, S3Config
from pydantic import Field, PrivateAttr

from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import Settings, load_settings
from adrag_assets.tables import Tables
from adrag_assets.volume import Volume, open_volume

if TYPE_CHECKING:
    from adrag_assets.embeddings.encoder import ClipEncoder
    from adrag_assets.embeddings.ray_embed import RayEmbedder

GROUP = "photo_index"  # the asset group of the photo pipeline
POOL = "adrag_index"  # every writer of the tables/collection; limit 1 in dagster.yaml


class VolumeResource(dg.ConfigurableResource):
    """The storage volume: photos under ``raw/``, brand images, generated ads."""

    root: str

    def get(self) -> Volume:
        return open_volume(self.root)


class TablesResource(dg.ConfigurableResource):
    """Where adrag's Delta tables live (images, image_embeddings, ...), with
    dagster-deltalake's storage configuration: a folder, or S3 / GCS (see
    :func:`storage_config`)."""

    root: str
    storage_options: LocalConfig | S3Config | AzureConfig | GcsConfig = Field(
        default_factory=LocalConfig, discriminator="provider"
    )

    def get(self) -> Tables:
        return Tables(self.root, self.storage_options.str_dict())


class EncoderResource(dg.ConfigurableResource):
    """Which CLIP model embeds photos: an ``ADRAG_ENCODER`` spec, precision and batch size."""

    spec: str
    precision: str = "auto"
    batch_size: int = 32
    device: str = "cpu"

    def get(self) -> ClipEncoder:
        # Imported here: torch loads in the runs that encode, not wherever Dagster loads defs.
        from adrag_assets.embeddings.encoder import load_encoder

        # Cached per process: the model loads once however many assets use it.
        return load_encoder(self.spec, self.precision, self.device)


class MilvusResource(dg.ConfigurableResource):
    """Milvus: a Milvus Lite file, a ``milvus-lite server`` URL or any Milvus, same code."""

    uri: str
    token: str = ""
    alias: str = "adrag_images"
    keep_old_collections: bool = False
    _index: MilvusIndex | None = PrivateAttr(default=None)

    def get(self) -> MilvusIndex:
        if self._index is None:
            self._index = MilvusIndex(self.uri, self.token, self.alias)
        return self._index

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # A Milvus Lite file is locked by the process using it: let go as soon as we're done.
        if self._index is not None:
            self._index.close()


class RayEmbedResource(dg.ConfigurableResource):
    """Where ``image_embeddings`` embeds a big batch of new images: on a Ray cluster with
    ``actors`` encoder actors (``address`` as Ray's ``ray.init``: ``local``, ``auto``,
    ``HOST:PORT``, ``ray://HOST:PORT``), through dagster-ray's resource; empty: in-process.
    The cluster is joined only when a run has ``min_images`` or more to embed; neither Ray
    nor dagster-ray is imported otherwise."""

    address: str = ""
    actors: int = 2
    min_images: int = 1000
    # ray.init's other arguments, e.g. a runtime_env for the workers (dagster-ray passes them).
    ray_init_options: dict[str, Any] = Field(default_factory=dict)
    _cluster: Any = PrivateAttr(default=None)
    _context: Any = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[RayEmbedResource]:
        if not self.address:
            yield self
            return
        from dagster_ray import Lifecycle

        from adrag_assets.ray_cluster import RayAtAddress

        cluster = RayAtAddress(
            address=self.address,
            ray_init_options=self.ray_init_options,
            # Connect only when a run has enough to embed; never delete a cluster we join.
            lifecycle=Lifecycle(connect=False, cleanup="never"),
        )
        with cluster.yield_for_execution(context) as ready:
            self._cluster, self._context = ready, context
            yield self

    def embedder(self, encoder: EncoderResource) -> RayEmbedder | None:
        """The Ray embedder for ``encoder``'s model, or None to embed in-process."""
        if not self.address:
            return None
        from adrag_assets.embeddings.ray_embed import RayEmbedder

        def connect() -> None:
            if self._cluster is not None and not self._cluster.connected:
                self._cluster.connect(self._context)
                self._cluster.on_connect(self._context)

        return RayEmbedder(
            encoder_spec=encoder.spec,
            precision=encoder.precision,
            batch_size=encoder.batch_size,
            actors=self.actors,
            min_images=self.min_images,
            connect=connect,
        )


def storage_config(tables_uri: str) -> LocalConfig | S3Config | GcsConfig:
    """dagster-deltalake's storage config for the tables' location.

    Only what is not secret goes in: this config is shown in the Dagster UI and stored with
    every run. Keys, region and endpoint are read by deltalake from the provider's own
    variables (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...), and ``Tables`` adds the
    conditional puts S3 needs for safe commits.
    """
    if tables_uri.startswith("s3://"):
        return S3Config()
    if tables_uri.startswith("gs://"):
        return GcsConfig()
    return LocalConfig()


def resources_from_settings(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    s = settings or load_settings()
    return {
        "volume": VolumeResource(root=s.volume_uri),
        "tables": TablesResource(root=s.tables_uri, storage_options=storage_config(s.tables_uri)),
        "encoder": EncoderResource(
            spec=s.encoder, precision=s.precision, batch_size=s.batch_size, device=s.device
        ),
        # EnvVar keeps the token's value out of the Dagster UI, run config and logs.
        "milvus": MilvusResource(
            uri=s.milvus_uri,
            token=dg.EnvVar("ADRAG_MILVUS_TOKEN") if s.milvus_token else "",
            alias=s.index_alias,
            keep_old_collections=s.keep_old_collections,
        ),
        "ray": RayEmbedResource(
            address=s.ray_address, actors=s.ray_actors, min_images=s.ray_min_images
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_from_settings())
