"""A real Azure Blob endpoint for tests: Azurite (Microsoft's emulator, from npm), in memory,
on a free localhost port, stopped afterwards.

`make setup` installs it under ``.venv/azurite`` when npm is there. It serves the emulator's
well-known account ``devstoreaccount1`` (a public development key, not a secret); object_store
(obstore) reaches it with ``AZURE_STORAGE_USE_EMULATOR`` and ``AZURITE_BLOB_STORAGE_URL``.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.s3 import free_port

INSTALLED = Path(sys.executable).parents[1] / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# Azurite's documented development key, the same in every installation.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
API_VERSION = "2021-08-06"


@contextmanager
def azurite_blob() -> Iterator[str]:
    """Yield the blob endpoint ``http://127.0.0.1:PORT`` of an in-memory Azurite."""
    exe = str(INSTALLED) if INSTALLED.exists() else shutil.which("azurite-blob")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail(f"{INSTALLED} is missing: `make setup` installs Azurite with npm")
        pytest.skip("Azurite is not installed (`make setup` installs it when npm is there)")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--inMemoryPersistence",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("azurite-blob did not start within 60 s") from None
                time.sleep(0.05)  # polling a port with a deadline, not a fixed wait
        yield f"http://127.0.0.1:{port}"
    finally:
        # In memory, nothing to flush: killed at once (it takes ~10 s to honour SIGTERM).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def create_container(endpoint: str, container: str) -> None:
    """Create a container (object_store cannot): one REST call signed with SharedKey."""
    date = email.utils.formatdate(usegmt=True)
    headers = f"x-ms-date:{date}\nx-ms-version:{API_VERSION}\n"
    resource = f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
    to_sign = "PUT\n" + "\n" * 11 + headers + resource
    key = base64.b64decode(ACCOUNT_KEY)
    signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest())
    request = urllib.request.Request(
        f"{endpoint}/{ACCOUNT}/{container}?restype=container",
        method="PUT",
        headers={
            "x-ms-date": date,
            "x-ms-version": API_VERSION,
            "Authorization": f"SharedKey {ACCOUNT}:{signature.decode()}",
            "Content-Length": "0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 201, r.status
