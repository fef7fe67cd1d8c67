"""Every `adrag` error is one line on stderr, exit 1 (2 for usage errors), no traceback.

Real subprocesses, as a user runs them: bad arguments, text that is not UTF-8, a Milvus
that does not answer (with credentials in its URI that must not show), a Milvus Lite file
held by another process.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from adrag_app.cli.stack import free_port
from tests.support.cli import error_lines, run_adrag
from tests.support.helpers import draw_brand

NOT_UTF8 = b"a \xff\xfe dog"


def assert_one_error(out, code: int, *expected: str) -> str:
    """Exactly one line on stderr, ``error: ...`` holding ``expected``; nothing on stdout."""
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == error_lines(out.stderr), out.stderr
    (line,) = error_lines(out.stderr)
    for text in expected:
        assert text in line, line
    assert out.stdout == ""
    return line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["search", "a dog", "-k", "0"], "0 is not in the range 1<=x<=100"),
        (["search", "a dog", "-k", "-1"], "-1 is not in the range"),
        (["search", NOT_UTF8], "QUERY is not valid UTF-8"),
        (["search", ""], "describe the photo you are looking for"),
        (["search", "  \t "], "describe the photo you are looking for"),
        (["generate", " "], "describe the photo you are looking for"),
        (["generate", NOT_UTF8], "DESCRIPTION is not valid UTF-8"),
        (["generate", "a dog", "--segment", NOT_UTF8], "--segment is not valid UTF-8"),
        (["generate", "a dog", "--seed-index", "3"], "--seed-index"),
    ],
)
def test_usage_errors_exit_2_in_one_line(env, args, expected):
    assert_one_error(run_adrag(*args, env=env), 2, expected)


@pytest.mark.parametrize("command", ["search", "status", "generate", "ingest"])
def test_unreachable_milvus_is_named_with_its_credentials_masked(env, settings, command):
    port = free_port()  # nothing listens there
    draw_brand(settings.volume / "brand" / "bottle.png", (200, 30, 60), "PNG")
    uri = f"http://adrag:s3cret-pass@127.0.0.1:{port}"
    args = {"search": ["search", "a dog"], "generate": ["generate", "a dog"]}.get(
        command, [command]
    )
    out = run_adrag(*args, env={**env, "ADRAG_MILVUS_URI": uri})
    line = assert_one_error(out, 1, f"cannot reach Milvus at http://***@127.0.0.1:{port}")
    assert "s3cret" not in out.stderr
    assert "Lite" not in line  # the file-lock hint is for a local file only


def test_a_lite_file_in_use_elsewhere_says_so(env, settings):
    db = Path(settings.milvus_uri)
    db.mkdir(parents=True)
    # What milvus-lite does when it opens the file: an exclusive flock on its LOCK.
    with (db / "LOCK").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for args in (["search", "a dog"], ["ingest"]):
            out = run_adrag(*args, env=env)
            assert_one_error(out, 1, "in use by another process", "milvus-lite server")


def test_no_command_shows_the_help_not_an_error(env):
    out = run_adrag(env=env)
    assert out.returncode == 2  # click's convention for a missing command
    assert out.stderr.startswith("Usage: adrag") and "search" in out.stderr
    assert not error_lines(out.stderr)
