"""Running the `adrag` command line as a user does: a real subprocess, its output as text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ADRAG = str(Path(sys.executable).parent / "adrag")


def run_adrag(*args: str | bytes, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``adrag ARGS`` with ``env`` over this process's environment; never raises on failure.

    Arguments may be bytes (a non-UTF-8 argument, as a shell passes one); output that is not
    UTF-8 is shown with replacement characters rather than failing the test harness.
    """
    return subprocess.run(
        [ADRAG, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]
