"""The Milvus client pings a Milvus Lite server only as the server allows: no GOAWAY.

`milvus-lite server` (grpc's Python server, default policy) accepts a ping only with a call in
flight, at most one per 5 minutes, and answers the third ping too soon with GOAWAY
"too_many_pings". A client with pymilvus' keepalive (pings while idle) beside adrag's shows the
server enforcing it; adrag's client, idle over the same time, gets none.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from adrag_assets.index.milvus import LITE_KEEPALIVE, grpc_options
from tests.support.app_home import _start_milvus, stop
from tests.support.data import REPO

GOAWAY = ("too_many_pings", "GOAWAY")


def test_milvus_lite_gets_its_ping_policy_and_other_milvus_pymilvus_own(tmp_path):
    for uri in (str(tmp_path / "adrag.db"), "http://127.0.0.1:19530", "http://localhost:1"):
        options = grpc_options(uri)
        assert options["grpc.keepalive_permit_without_calls"] is False, uri
        assert options["grpc.keepalive_time_ms"] >= 300_000, uri  # the server's 5 minutes
    assert grpc_options("https://milvus.example.com:19530") == {}
    assert grpc_options("http://127.0.0.1:19530") == LITE_KEEPALIVE


def test_an_idle_adrag_client_gets_no_goaway_from_milvus_lite_server(tmp_path):
    server, port = _start_milvus(tmp_path / "milvus", tmp_path / "milvus.log")
    uri = f"http://127.0.0.1:{port}"
    clients = {}
    try:
        # adrag's client first, so it is idle at least as long as the pinging one.
        for mode in ("adrag", "pinging"):
            clients[mode] = _client(uri, mode, tmp_path / f"{mode}.err")
            _wait_for(lambda p=clients[mode]: p.stdout.readline().strip() == "answered", mode)
        pinging_err = tmp_path / "pinging.err"
        _wait_for(lambda: "too_many_pings" in pinging_err.read_text(), "the server's GOAWAY")
        for proc in clients.values():
            proc.stdin.write("again\n")
            proc.stdin.flush()
        out, _ = clients["adrag"].communicate(timeout=60)
        err = (tmp_path / "adrag.err").read_text()
        assert clients["adrag"].returncode == 0, err
        assert out.strip() == "answered"
        assert not [word for word in GOAWAY if word in err], err
    finally:
        for proc in clients.values():
            proc.kill()
            proc.wait(10)
        stop(server)


def _client(uri: str, mode: str, err: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.milvus_idle_client", uri, mode],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
    )


def _wait_for(check, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
