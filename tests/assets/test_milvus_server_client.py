"""adrag's Milvus client and a `milvus-lite server`: it pings only as the server allows (no
GOAWAY), and a long-lived client (the app's) searches again after the server restarted.

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

from adrag_app.cli.stack import free_port, port_open
from adrag_assets.index.milvus import LITE_KEEPALIVE, MilvusIndex, grpc_options
from tests.support.app_home import BIN, _start_milvus, stop
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


def test_a_long_lived_client_searches_again_after_the_server_restarts(tmp_path):
    """`adrag up` starts a dead server again on the same data and port; the restarted server
    holds every collection released, and a client that loaded it before loads it again."""
    port = free_port()
    server = _server_on(port, tmp_path)
    try:
        index = MilvusIndex(f"http://127.0.0.1:{port}")
        name = index.ensure_collection("random:restart", 4, "random:restart")
        row = {"image_id": "a", "path": "raw/a.jpg", "labels": {}, "text": "dog"}
        index.client.upsert(name, [{**row, "vector": [1.0, 0.0, 0.0, 0.0]}])
        assert [h.image_id for h in index.search_dense(name, [1.0, 0.0, 0.0, 0.0], 1)] == ["a"]
        server.kill()  # kill -9
        server.wait(30)
        server = _server_on(port, tmp_path)
        assert [h.image_id for h in index.search_dense(name, [1.0, 0.0, 0.0, 0.0], 1)] == ["a"]
        index.close()
    finally:
        stop(server)


def _server_on(port: int, tmp_path: Path) -> subprocess.Popen:
    log = tmp_path / "milvus.log"
    proc = subprocess.Popen(
        [str(BIN / "milvus-lite"), "server", "--data-dir", str(tmp_path / "milvus")]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_for(lambda: port_open(port) or proc.poll() is not None, "milvus-lite server", 60)
    assert proc.poll() is None, log.read_text()[-2000:]
    return proc
