"""Dagster resources: the volume, the Delta tables, the encoder and the Milvus index.

Their defaults come from :mod:`adrag_assets.settings` (the ``ADRAG_*`` variables), so the
Dagster UI, the daemon and the CLI agree; a run can still override any field in its config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from dagster_deltalake import AzureConfig, GcsConfig, LocalConfig, S3Config
from pydantic import Field, PrivateAttr

from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.settings import Settings, load_settings
from adrag_assets.tables import Tables
from adrag_assets.volume import Volume, open_volume

if TYPE_CHECKING:
    from adrag_assets.embeddings.encoder import ClipEncoder

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
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_from_settings())
