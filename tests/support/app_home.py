"""One indexed ADRAG_HOME shared by the agent, AppTest and browser tests of a session.

The index lives in a ``milvus-lite server`` (gRPC on localhost), not a Milvus Lite file: a
file is locked by the first process that opens it *for that process's lifetime* (closing the
client does not release it, checked with milvus-lite 3.x), and the browser test needs the app
in a second process. It is also how `adrag up` runs. The pipeline runs once per session
(it is the slow part); tests write ads into the shared volume, so they compare before/after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image, ImageDraw

from adrag_app.cli.stack import free_port, port_open
from adrag_assets.instance import ensure_dagster_home
from adrag_assets.settings import Settings, load_settings
from tests.support.data import PETS, TEST_ENCODER, pets_images
from tests.support.helpers import run_pipeline

BIN = Path(sys.executable).parent
# Variables that must not leak in from the developer's shell into these tests.
CLEARED = (
    "ADRAG_VOLUME",
    "REPLICATE_API_TOKEN",
    "ADRAG_MLFLOW_TRACKING_URI",
    "ADRAG_TRACING",
    "ADRAG_LLM_BASE_URL",
    "ADRAG_LLM_MODEL",
    "ADRAG_LLM_API_KEY",
    "ADRAG_DAGSTER_URL",
    "ADRAG_SEARCH_MODE",
    "MLFLOW_TRACKING_URI",
)


@dataclass
class IndexedHome:
    root: Path
    env: dict[str, str]
    milvus: subprocess.Popen

    def settings(self) -> Settings:
        return load_settings({**os.environ, **self.env})


_shared: IndexedHome | None = None


def draw_brand(path: Path, color: tuple[int, int, int] = (200, 30, 60)) -> None:
    """A stand-in product shot: a coloured bottle with a label on a transparent background."""
    image = Image.new("RGBA", (240, 360), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((50, 60, 190, 340), radius=24, fill=color)
    draw.rectangle((95, 20, 145, 60), fill=color)
    draw.text((90, 190), "ADRAG", fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")


def _start_milvus(data_dir: Path, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "milvus-lite"), "server", "--data-dir", str(data_dir)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"milvus-lite server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)
    return proc, port


def stop(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    """Terminate a process we started (and its group), then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(10)


def indexed_home(request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> IndexedHome:
    """The session's indexed home, built on first use and torn down at the session's end."""
    global _shared
    if _shared is not None and _shared.milvus.poll() is None:
        return _shared
    root = factory.mktemp("app_home")
    home = root / "home"
    (home / "milvus-server").mkdir(parents=True)
    milvus, port = _start_milvus(home / "milvus-server", root / "milvus.log")
    request.session.config.add_cleanup(lambda: stop(milvus))
    env = {
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": TEST_ENCODER,
        "ADRAG_PRECISION": "fp32",
        "ADRAG_BATCH_SIZE": "32",
        "ADRAG_MILVUS_URI": f"http://127.0.0.1:{port}",
        "DAGSTER_HOME": str(home / "dagster"),
        "ADRAG_GENERATOR": "local",  # never Replicate in these tests
    }
    with using_env(env):
        settings = load_settings()
        settings.raw_dir.mkdir(parents=True)
        shutil.copytree(pets_images(), settings.raw_dir / "pets")
        shutil.copy(PETS / "labels.csv", settings.raw_dir / "labels.csv")
        draw_brand(settings.volume / "brand" / "bottle.png")
        ensure_dagster_home(settings.dagster_home)  # where the app's ads are recorded
        with dg.instance_for_test() as instance:
            run_pipeline(settings, instance)
    _shared = IndexedHome(root, env, milvus)
    return _shared


@contextmanager
def using_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` set (and CLEARED unset) in this process for the block, restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for key in CLEARED:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        yield


def forget_mlflow() -> None:
    """Leave no MLflow store configured for other test modules."""
    import mlflow

    mlflow.set_tracking_uri(None)  # flushes queued traces first (to the store they belong to)
