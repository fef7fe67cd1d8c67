"""deploy/dagster.yaml, the instance config documented for a deployment past one machine:
valid for this Dagster, free of secrets, and handing run workers what adrag needs."""

from __future__ import annotations

import re

import yaml
from dagster._core.instance.config import dagster_instance_config

from tests.support.data import REPO

DEPLOY = REPO / "deploy"
# What a run worker in its own container reads (adrag_assets/settings.py's names).
RUN_VARIABLES = (
    "ADRAG_DAGSTER_PG_URL",
    "ADRAG_VOLUME",
    "ADRAG_TABLES",
    "ADRAG_MILVUS_URI",
    "ADRAG_MILVUS_TOKEN",
    "ADRAG_ENCODER",
)


def test_deploy_dagster_yaml_is_a_valid_instance_config_without_secrets():
    # Dagster's own schema check of every section (the launcher's own config is checked by
    # dagster-docker when it loads, which is not installed here).
    config, custom_class = dagster_instance_config(str(DEPLOY))
    assert custom_class is None
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "ADRAG_DAGSTER_PG_URL"}
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]

    launcher = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]
    assert launcher["class"] == "DockerRunLauncher"
    assert set(RUN_VARIABLES) <= set(launcher["config"]["env_vars"])
    # The URL appears only as a placeholder in a comment: its value comes from `env:`.
    urls = re.findall(r"postgresql\+psycopg2://\S+", (DEPLOY / "dagster.yaml").read_text())
    assert urls == ["postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB"], urls
