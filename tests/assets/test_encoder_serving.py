"""`mlflow models serve -m models:/adrag-encoder@live` in a fresh environment answers a REST
request with the vectors the pipeline computes.

The environment is a new virtualenv holding only the model's own requirements (no adrag, no
Dagster, no Milvus; :mod:`tests.support.serving_venv`); the model brings the adrag modules
it loads (``code_paths``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from adrag_app.cli.stack import free_port
from adrag_assets.embeddings.encoder import ClipEncoder, decode_for_model
from adrag_assets.embeddings.mlflow_model import LIVE_ALIAS, MODEL_NAME, requirements
from adrag_assets.embeddings.spec import EncoderSpec
from tests.support.data import TEST_ENCODER, pets_images
from tests.support.helpers import adrag
from tests.support.serving_venv import serving_venv

LIVE_URI = f"models:/{MODEL_NAME}@{LIVE_ALIAS}"
TEXTS = ["a beagle on a lawn", "a white cat on a sofa"]


@pytest.fixture
def registered_live(env, settings, tmp_path, monkeypatch) -> str:
    """An index of a few photos and its encoder registered (alias ``live``), as users do it;
    the MLflow store's URI."""
    store = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("ADRAG_MLFLOW_TRACKING_URI", store)
    for photo in sorted(pets_images().glob("*.jpg"))[:4]:
        shutil.copy(photo, settings.raw_dir / photo.name)
    adrag("ingest", env=env)
    reg = json.loads(adrag("register-encoder", "--json", env=env).stdout)
    assert reg["alias"] == LIVE_ALIAS
    return store


def test_requirements_are_pinned_and_name_no_adrag():
    reqs = requirements()
    assert not [r for r in reqs if r.split("==")[0] == "adrag"]
    assert all("==" in r for r in reqs), reqs
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(reqs)


def test_the_live_model_serves_from_a_fresh_venv(registered_live, tmp_path):
    venv = serving_venv()
    port = free_port()
    # Only what a fresh machine has: no PYTHONPATH into this checkout, no adrag installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "MLFLOW_TRACKING_URI": registered_live,
        "MLFLOW_REGISTRY_URI": registered_live,
        "PATH": f"{venv / 'bin'}:{env['PATH']}",
    }
    no_adrag = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import adrag_assets"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    assert no_adrag.returncode != 0, "the serving venv must not see adrag"
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [str(venv / "bin" / "mlflow"), "models", "serve", "-m", LIVE_URI]
        + ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        photos = [p.read_bytes() for p in sorted(pets_images().glob("*.jpg"))[:2]]
        rows = [[base64.b64encode(b).decode(), None] for b in photos] + [[None, t] for t in TEXTS]
        body = {"dataframe_split": {"columns": ["image", "text"], "data": rows}}
        answer = _post_when_up(f"http://127.0.0.1:{port}/invocations", body, server, log)
        served = np.asarray(answer["predictions"], np.float32)
        encoder = ClipEncoder(EncoderSpec.parse(TEST_ENCODER), "fp32")

        here = np.concatenate(
            [
                encoder.encode_images([decode_for_model(b, encoder.image_size) for b in photos]),
                encoder.encode_texts(TEXTS),
            ]
        )
        assert served.shape == here.shape
        cosines = np.sum(served * here, axis=1) / (
            np.linalg.norm(served, axis=1) * np.linalg.norm(here, axis=1)
        )
        assert cosines.min() >= 0.9999, cosines
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(10)


def _post_when_up(url: str, body: dict, server: subprocess.Popen, log: Path) -> dict:
    data = json.dumps(body).encode()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited:\n{log.read_text()[-4000:]}")
        request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{e.code}: {e.read().decode()[:2000]}") from None
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow models serve never answered:\n{log.read_text()[-4000:]}")
