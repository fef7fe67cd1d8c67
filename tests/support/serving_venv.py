"""A fresh virtualenv with only the registered encoder's requirements, to serve it in.

    python -m tests.support.serving_venv      # build it now (`make serving-venv`)

MLflow's ``--env-manager virtualenv`` needs pyenv and downloads a Python, and ``uv`` is not
here; a plain venv from this Python, with ``pip install -r`` the model's own requirements,
is what a fresh machine would do. Building one takes minutes (MLflow's and torch's
dependencies), so it is kept under ``~/.cache/adrag/serving-venvs/<digest>``, keyed by the
requirements: a new pin builds a new one. A lock lets parallel test workers share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from adrag_assets.embeddings.mlflow_model import requirements

CACHE = Path.home() / ".cache" / "adrag" / "serving-venvs"
READY = ".adrag-ready"  # written last: a venv without it was cut short and is rebuilt


def serving_venv(reqs: list[str] | None = None, cache: Path = CACHE) -> Path:
    """The venv for ``reqs`` (the model's requirements by default), built on first use."""
    reqs = sorted(reqs if reqs is not None else requirements())
    text = "\n".join(reqs) + "\n"
    venv = cache / hashlib.sha256(text.encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / READY).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        # The base interpreter, not this venv's: nothing of this environment leaks in.
        subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
        (venv / "requirements.txt").write_text(text)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(venv / "requirements.txt")],
            check=True,
        )
        (venv / READY).write_text(text)
    return venv


if __name__ == "__main__":
    print(serving_venv())
