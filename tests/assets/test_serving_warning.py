"""A command pointed at another index than the running stack's says so, in one line.

`adrag up` records where it serves in ``$ADRAG_HOME/stack.json``; here the record is written
by the same function for a real live process (a `sleep` standing in for `adrag up`), and the
real CLI (a subprocess, as a user runs it) is asked from shells with and without the stack's
URI.
"""

from __future__ import annotations

import json
import subprocess

import psutil
import pytest

from adrag_app.cli import serving
from tests.support.cli import run_adrag

SERVED = "http://127.0.0.1:19999"


@pytest.fixture
def stand_in():
    """A live process whose pid the record names."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def record_for(home, proc: subprocess.Popen, uri: str = SERVED) -> None:
    path = serving.write_record(home, uri, "http://127.0.0.1:3000", "http://127.0.0.1:8501")
    record = json.loads(path.read_text())
    record["pid"], record["started"] = proc.pid, psutil.Process(proc.pid).create_time()
    path.write_text(json.dumps(record))


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: `adrag up`")]


def test_status_in_a_shell_without_the_stacks_uri_is_warned(env, settings, stand_in):
    record_for(settings.home, stand_in)
    out = run_adrag("status", "--json", env=env)  # the default: the Milvus Lite file
    assert out.returncode == 0, out.stderr
    lines = warnings(out.stderr)
    assert len(lines) == 1, out.stderr
    assert f"pid {stand_in.pid}" in lines[0]
    assert f"export ADRAG_MILVUS_URI={SERVED}" in lines[0]
    assert str(settings.home / "milvus" / "adrag.db") in lines[0]
    assert json.loads(out.stdout)["index_rows"] == 0  # stdout stays the JSON alone


def test_the_stacks_uri_any_loopback_spelling_is_not_warned(env, settings, stand_in):
    record_for(settings.home, stand_in)
    assert serving.same_uri(SERVED, "http://localhost:19999/")
    assert not serving.same_uri(SERVED, "http://127.0.0.1:19998")
    assert serving.other_index_warning(settings.home, "http://localhost:19999") is None
    # A usage error is still about the command, and the shell is the stack's: no warning.
    out = run_adrag("search", env={**env, "ADRAG_MILVUS_URI": SERVED})
    assert out.returncode == 2 and not warnings(out.stderr), out.stderr


def test_a_stack_that_is_gone_is_forgotten(env, settings, stand_in):
    record_for(settings.home, stand_in)
    assert serving.running_stack(settings.home) is not None
    stand_in.kill()
    stand_in.wait()
    assert serving.running_stack(settings.home) is None
    out = run_adrag("status", "--json", env=env)
    assert out.returncode == 0 and not warnings(out.stderr), out.stderr
    # Its own record only: removing is a no-op for another process's.
    serving.remove_record(settings.home)
    assert serving.record_path(settings.home).exists()
    serving.write_record(settings.home, SERVED, "", "")
    serving.remove_record(settings.home)
    assert not serving.record_path(settings.home).exists()


def test_a_secret_in_the_uri_is_not_recorded(settings):
    path = serving.write_record(settings.home, "http://user:hunter2@127.0.0.1:19999", "", "")
    assert "hunter2" not in path.read_text()
