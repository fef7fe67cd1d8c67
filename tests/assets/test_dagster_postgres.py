"""Dagster's runs, event logs and schedules in a real PostgreSQL (ADRAG_DAGSTER_PG_URL)."""

from __future__ import annotations

import os
import re

import dagster as dg
import pytest

from adrag_app.cli.stack import StackError, open_instance
from adrag_assets.settings import load_settings
from tests.support.data import TEST_ENCODER, pets_images
from tests.support.helpers import adrag
from tests.support.postgres import PASSWORD, postgres_server
from tests.support.s3 import free_port


def test_ingest_run_lands_in_postgres(tmp_path, monkeypatch):
    home = tmp_path / "home"
    raw = home / "volume" / "raw"
    raw.mkdir(parents=True)
    for p in sorted(pets_images().glob("*.jpg"))[:3]:
        (raw / p.name).write_bytes(p.read_bytes())
    with postgres_server() as url:
        env = {
            "ADRAG_HOME": str(home),
            "ADRAG_ENCODER": TEST_ENCODER,
            "ADRAG_PRECISION": "fp32",
            "DAGSTER_HOME": str(home / "dagster"),
            "ADRAG_DAGSTER_PG_URL": url,
            "ADRAG_MILVUS_URI": "",
            "ADRAG_VOLUME": "",
            "ADRAG_TABLES": "",
        }
        out = adrag("ingest", env=env, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        run_id = re.search(r"run (\S+) succeeded", out.stdout).group(1)

        yaml = (home / "dagster" / "dagster.yaml").read_text()
        assert "postgres:" in yaml and "env: ADRAG_DAGSTER_PG_URL" in yaml
        password = url.split("@")[0].rsplit(":", 1)[1]
        assert password not in yaml
        # No SQLite run storage was made: the run is only in PostgreSQL.
        assert not (home / "dagster" / "history" / "runs.db").exists()

        monkeypatch.setenv("ADRAG_DAGSTER_PG_URL", url)
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            mats = instance.fetch_materializations(dg.AssetKey("image_index"), limit=5).records
            assert mats and mats[0].run_id == run_id
    assert os.environ.get("ADRAG_DAGSTER_PG_URL") == url  # monkeypatch undoes it after


def test_adrag_up_stops_at_once_on_an_unreachable_postgres(tmp_path, monkeypatch):
    """`adrag up` opens the instance before starting any service: a PostgreSQL that does not
    answer is one error naming where it is, without the password."""
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg2://adrag:{PASSWORD}@127.0.0.1:{port}/adrag"
    env = {"ADRAG_HOME": str(tmp_path / "home"), "ADRAG_DAGSTER_PG_URL": url}
    for name, value in env.items():  # Dagster reads the URL from the environment itself
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    with pytest.raises(StackError) as e:
        open_instance(load_settings(env))
    message = str(e.value)
    assert f"PostgreSQL at 127.0.0.1:{port}/adrag (ADRAG_DAGSTER_PG_URL)" in message, message
    assert "Connection refused" in message, message  # the driver's reason, not a config error
    assert PASSWORD not in message
