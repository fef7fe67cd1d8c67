"""The volume in Azure Blob storage (``az://``): a real Azurite endpoint, a real ingest.

One lean test: photos uploaded to a container become rows of the Delta tables (local here:
Delta tables take s3:// or gs://) and vectors in the index, and a blob deleted from the
container leaves them on the next run.
"""

from __future__ import annotations

import obstore
import pytest
from obstore.store import from_url

from adrag_assets.settings import load_settings
from tests.support.azurite import azurite_blob, create_container
from tests.support.data import pets_images
from tests.support.helpers import index_for, run_pipeline, tables_for

CONTAINER = "adrag-photos"


@pytest.fixture
def az_volume(env, monkeypatch):
    with azurite_blob() as endpoint:
        monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
        monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", endpoint)
        create_container(endpoint, CONTAINER)
        monkeypatch.setenv("ADRAG_VOLUME", f"az://{CONTAINER}/library")
        yield from_url(f"az://{CONTAINER}/library")


def test_ingest_from_an_azure_container(az_volume, instance):
    photos = sorted(pets_images().glob("*.jpg"))[:3]
    for p in photos:
        obstore.put(az_volume, f"raw/pets/{p.name}", p.read_bytes())
    settings = load_settings()
    assert settings.volume == f"az://{CONTAINER}/library"

    meta = run_pipeline(settings, instance)
    assert meta["images"]["added"] == 3
    tables, index = tables_for(settings), index_for(settings)
    try:
        assert tables.count("images") == 3
        assert index.count(index.live_collection()) == 3

        obstore.delete(az_volume, f"raw/pets/{photos[0].name}")
        meta = run_pipeline(settings, instance)
        assert meta["images"]["deleted"] == 1
        assert tables.count("images") == 2
        assert index.count(index.live_collection()) == 2
    finally:
        index.close()
