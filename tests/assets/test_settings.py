"""The settings module: the one reader of the environment, one error style, no secret shown."""

from __future__ import annotations

import pickle
import re
import traceback
from pathlib import Path

import pytest

from adrag_assets.defs.resources import resources_from_settings
from adrag_assets.settings import (
    SECRET_VARS,
    VARIABLES,
    GeneratorSettings,
    SettingsError,
    apply_secrets,
    load_settings,
    secret_values,
)
from tests.support.data import REPO

SETTINGS_MODULE = Path("adrag_assets/settings.py")
READS_ENV = re.compile(r"\benviron\b|getenv\(")
# Writes to the environment outside settings.py, each for a consumer that reads the variable
# itself. Exact lines: a new one has to be added here, with its reason.
ALLOWED_WRITES = {
    (
        "adrag_assets/instance.py",
        'os.environ["DAGSTER_HOME"] = str(home)',
    ): "Dagster's DagsterInstance.get() and the processes Dagster starts read DAGSTER_HOME",
    (
        "adrag_app/cli/demo.py",
        'os.environ["ADRAG_ENCODER"] = OFFLINE_ENCODER',
    ): "the demo's offline fallback must reach the adrag commands it runs, as a user would",
    (
        "adrag_app/cli/errors.py",
        'os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")',
    ): "MLflow sets its log level from this variable when it is imported, lazily, later",
}
TOKEN = "r8_SettingsTestTokenNeverShown0123456789"
KEY = "sk-settings-test-key-never-shown-0123"


def test_only_the_settings_module_reads_the_environment() -> None:
    found = set()
    for package in ("adrag_assets", "adrag_app"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            if rel == SETTINGS_MODULE:
                continue
            for line in path.read_text().splitlines():
                if READS_ENV.search(line):
                    found.add((rel.as_posix(), line.strip()))
    unexpected = found - ALLOWED_WRITES.keys()
    assert not unexpected, f"read the environment through adrag_assets.settings: {unexpected}"
    # A write that went away leaves its entry here: keep the list exactly what the code does.
    assert found == ALLOWED_WRITES.keys()


def test_bad_values_make_one_error_naming_each_variable() -> None:
    env = {
        "ADRAG_BATCH_SIZE": "abc",
        "ADRAG_SEARCH_MODE": "fuzzy",
        "ADRAG_HYBRID_WEIGHTS": "half",
        "ADRAG_GENERATION_TIMEOUT": "0",
        "ADRAG_REPLICATE_SAFETY_TOLERANCE": "9",
        "ADRAG_LLM_TIMEOUT": "soon",
        "ADRAG_TRACING": "maybe",
        "ADRAG_MAX_UPLOAD_MB": "1.5",
        "ADRAG_MILVUS_TOKEN": TOKEN,
        "REPLICATE_API_TOKEN": TOKEN,
        "ADRAG_LLM_API_KEY": KEY,
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    error = info.value
    assert isinstance(error, ValueError)
    assert str(error).splitlines() == [
        "ADRAG_BATCH_SIZE='abc': expected an integer",
        "ADRAG_SEARCH_MODE='fuzzy': expected hybrid, dense or text",
        "ADRAG_HYBRID_WEIGHTS='half': expected two numbers, dense and text, e.g. 0.5,0.5",
        "ADRAG_GENERATION_TIMEOUT='0': expected a number greater than 0",
        "ADRAG_REPLICATE_SAFETY_TOLERANCE='9': expected a number at most 6",
        "ADRAG_LLM_TIMEOUT='soon': expected a number",
        "ADRAG_TRACING='maybe': expected on or off (1, true, yes or 0, false, no)",
        "ADRAG_MAX_UPLOAD_MB='1.5': expected an integer",
    ]
    assert error.problems == str(error).splitlines()
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    shown.append(repr(pickle.loads(pickle.dumps(error))))
    for text in shown:
        assert TOKEN not in text and KEY not in text


def test_secrets_stay_out_of_reprs_and_of_pydantic_errors() -> None:
    settings = load_settings(
        {"ADRAG_MILVUS_TOKEN": TOKEN, "REPLICATE_API_TOKEN": TOKEN, "ADRAG_LLM_API_KEY": KEY}
    )
    assert settings.milvus_token == settings.generator.replicate_api_token == TOKEN
    assert settings.llm.api_key == KEY
    for text in (repr(settings), str(settings), repr(settings.generator), repr(settings.llm)):
        assert TOKEN not in text and KEY not in text
    # Built by hand, a section still keeps a value given in the wrong place out of its error.
    with pytest.raises(ValueError) as info:
        GeneratorSettings(replicate_api_token=TOKEN, timeout_s=TOKEN)  # type: ignore[arg-type]
    assert "timeout_s" in str(info.value) and TOKEN not in str(info.value)
    assert {"ADRAG_MILVUS_TOKEN", "REPLICATE_API_TOKEN", "ADRAG_LLM_API_KEY"} <= set(SECRET_VARS)
    values = {"ADRAG_MILVUS_TOKEN": TOKEN, "ADRAG_LLM_API_KEY": "short", "ADRAG_HOME": "/h/ome"}
    assert secret_values(values) == [TOKEN]  # short values would redact innocent words


def test_defaults_follow_home_and_empty_means_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = load_settings({"ADRAG_HOME": str(home), "ADRAG_VOLUME": "", "ADRAG_BATCH_SIZE": " "})
    assert (s.home, s.volume, s.tables_dir) == (home, home / "volume", home / "tables")
    assert (s.raw_dir, s.dagster_home) == (home / "volume" / "raw", home / "dagster")
    assert s.milvus_uri == str(home / "milvus" / "adrag.db")
    assert s.tracing.tracking_uri == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert (s.batch_size, s.search_mode, s.tracing.enabled) == (32, "hybrid", True)
    assert s.generator == GeneratorSettings()

    tables = tmp_path / "elsewhere" / "tables"
    s = load_settings(
        {
            "ADRAG_HOME": str(home),
            "ADRAG_TABLES": str(tables),
            "ADRAG_SEARCH_MODE": " Dense ",
            "ADRAG_KEEP_OLD_COLLECTIONS": "yes",
            "ADRAG_HYBRID_WEIGHTS": "0.7,0.3",
            "ADRAG_TRACING": "off",
            "ADRAG_DAGSTER_URL": "http://d:3000/",
        }
    )
    assert s.tables_dir == tables
    assert resources_from_settings(s)["tables"].root == str(tables)  # type: ignore[attr-defined]
    assert (s.search_mode, s.keep_old_collections, s.hybrid_weights) == ("dense", True, (0.7, 0.3))
    assert s.tracing.enabled is False
    assert s.app.asset_url() == "http://d:3000/assets/ad_creatives"
    copy = s.model_copy(update={"volume": tmp_path / "v"})
    assert (copy.volume, copy.tables_dir, s.volume) == (tmp_path / "v", tables, home / "volume")


def test_the_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADRAG_LLM_BASE_URL", "http://llm:8000")
    monkeypatch.setenv("ADRAG_LLM_MODEL", "m")
    assert load_settings().llm.configured
    monkeypatch.setenv("ADRAG_SENSOR_INTERVAL", "-1")
    with pytest.raises(SettingsError, match=r"^ADRAG_SENSOR_INTERVAL='-1': .* greater than 0$"):
        load_settings()


def test_streamlit_secrets_fill_in_missing_variables_only() -> None:
    env = {"ADRAG_HOME": "/from/env"}
    copied = apply_secrets(
        {
            "ADRAG_HOME": "/from/secrets",
            "ADRAG_DAGSTER_URL": "http://d:3000",
            "ADRAG_MAX_UPLOAD_MB": 5,
            "OTHER": "x",
        },
        env,
    )
    assert copied == ["ADRAG_DAGSTER_URL", "ADRAG_MAX_UPLOAD_MB"]
    assert env == {
        "ADRAG_HOME": "/from/env",
        "ADRAG_DAGSTER_URL": "http://d:3000",
        "ADRAG_MAX_UPLOAD_MB": "5",
    }
    assert load_settings(env).app.max_upload_mb == 5


def test_the_readme_lists_every_variable() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in (*VARIABLES, "ADRAG_DEMO_IMAGES") if f"`{name}`" not in table]
    assert not missing, f"add these to the README's Configuration table: {missing}"


def test_object_store_urls_are_kept_as_urls_and_unknown_schemes_refused(tmp_path):
    for name, field in (("ADRAG_VOLUME", "volume"), ("ADRAG_TABLES", "tables_dir")):
        s = load_settings({"ADRAG_HOME": str(tmp_path), name: "s3://brand/volume/"})
        # A URL, not a Path: Path("s3://b") would be a local folder holding nothing.
        assert getattr(s, field) == "s3://brand/volume"
        assert load_settings({name: "gs://brand"}).model_dump()[field] == "gs://brand"
        # "ftp://brand/volume" as a folder name would ingest nothing and say nothing.
        with pytest.raises(SettingsError) as e:
            load_settings({"ADRAG_HOME": str(tmp_path), name: "ftp://brand/volume"})
        assert str(e.value).startswith(f"{name}='ftp://brand/volume': object-store URLs must")
        with pytest.raises(SettingsError, match="3\\+ characters"):
            load_settings({name: "s3://ab/x"})
    with pytest.raises(SettingsError, match="DAGSTER_HOME"):
        load_settings({"DAGSTER_HOME": "s3://brand/dagster"})
