"""Shared fixtures: a fresh ADRAG_HOME with the real pet photos, a tiny real CLIP, Milvus Lite."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest

from adrag_assets.settings import Settings, load_settings
from tests.support.data import PETS, TEST_ENCODER, pets_images

OURS = ("adrag_assets", "adrag_app")

# OCR reads a photo in ~0.3 s: every home of 296 pet photos would pay ~90 s for words no test
# of theirs looks at. Off for the suite (the processes tests start inherit it); the OCR tests
# turn it on (tests/assets/test_photo_text.py).
os.environ["ADRAG_OCR"] = "off"

# Files that run whole stacks (minutes each) start first, longest first (their time on a loaded
# machine): with a test file per worker (`make test`), a long file picked up last would be the
# suite's tail on its own. xdist keeps this order with --no-loadscope-reorder (pyproject.toml).
SLOW_FIRST = (
    "tests/e2e/test_stack_e2e.py",
    "tests/assets/test_ray_embed.py",
    "tests/e2e/test_first_hour.py",
    "tests/assets/test_damaged_tables.py",
    "tests/assets/test_eval_cli.py",
    "tests/e2e/test_stack_lifecycle.py",
    "tests/e2e/test_stack_lineage.py",
    "tests/assets/test_dead_runs.py",
    "tests/assets/test_encoder_serving.py",
    "tests/assets/test_object_store.py",
    "tests/assets/test_index_heal.py",
    "tests/e2e/",
    "tests/assets/test_concurrency.py",
    "tests/assets/test_sensor_retry.py",
    "tests/assets/test_cli_and_definitions.py",
    "tests/assets/test_quality_gate.py",
    "tests/assets/test_encoder_pyfunc.py",
    "tests/app/test_redaction.py",
    "tests/app/test_chat_cli.py",
    "tests/assets/test_dagster_postgres.py",
    "tests/assets/test_evaluation.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def slow_rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, p in enumerate(SLOW_FIRST) if path.startswith(p)), len(SLOW_FIRST))

    items.sort(key=slow_rank)  # stable: the order within each rank is kept


@pytest.fixture(autouse=True)
def _project_imports_stay_the_projects():
    """Loading the registered encoder in-process (mlflow.pyfunc.load_model) puts the model's
    ``code_paths`` copy of a few adrag modules first on sys.path and drops adrag's modules
    from sys.modules, so later tests in the same worker (and processes they spawn) would
    import a partial adrag. Each test leaves the import state as it found it."""
    path = list(sys.path)
    modules = {k: v for k, v in sys.modules.items() if k.startswith(OURS)}
    yield
    sys.path[:] = path
    for name in [k for k in sys.modules if k.startswith(OURS) and k not in modules]:
        del sys.modules[name]
    sys.modules.update(modules)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """ADRAG_* variables for an empty home under tmp_path, set in this process too."""
    values = {
        "ADRAG_HOME": str(tmp_path / "home"),
        "ADRAG_ENCODER": TEST_ENCODER,
        "ADRAG_PRECISION": "fp32",
        "ADRAG_BATCH_SIZE": "32",
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ADRAG_VOLUME", raising=False)
    monkeypatch.delenv("ADRAG_MILVUS_URI", raising=False)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    s = load_settings()
    s.raw_dir.mkdir(parents=True)
    return s


@pytest.fixture
def pets(settings: Settings) -> Settings:
    """The volume holds the 296 pet photos under raw/pets/ and labels.csv under raw/."""
    shutil.copytree(pets_images(), settings.raw_dir / "pets")
    shutil.copy(PETS / "labels.csv", settings.raw_dir / "labels.csv")
    return settings


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst
