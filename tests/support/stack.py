"""Starting and stopping `adrag up` for end-to-end tests, with bounded waits.

`adrag up` runs as a real process tree; the tests watch it with `adrag status` and `adrag
search` run in this process (click's CliRunner): the same commands, without the ~5 s of
imports each subprocess pays, so polling is cheap and does not take CPU from the stack's runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from click.testing import CliRunner

from adrag_app.cli import main as adrag_main
from adrag_app.cli.stack import free_port
from tests.support.data import PETS

BIN = Path(sys.executable).parent
# Debian's chromium, driven by Playwright (its own browser download is not reachable here).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Stack:
    def __init__(self, env: dict[str, str], home: Path):
        self.env = env
        self.home = home
        self.dagster_port = free_port()
        self.milvus_port = free_port()
        self.env["ADRAG_MILVUS_URI"] = f"http://127.0.0.1:{self.milvus_port}"
        self.proc: subprocess.Popen | None = None
        self.out = home / "adrag-up.out"

    def start(self, timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(BIN / "adrag"),
                "up",
                "--dagster-port",
                str(self.dagster_port),
                "--app-port",
                str(free_port()),
            ],
            env={**os.environ, **self.env},
            stdout=self.out.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: "adrag is up" in self.out.read_text(), timeout, "adrag up", self, every=0.5
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def adrag(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "adrag"), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def adrag_here(self, *args: str) -> tuple[int, str]:
        """``adrag ARGS`` in this process with the stack's environment: (exit code, stdout)."""
        result = CliRunner().invoke(adrag_main, list(args), env=self.env)
        return result.exit_code, result.stdout

    def status(self) -> dict:
        code, out = self.adrag_here("status", "--json")
        return json.loads(out) if code == 0 else {}

    def add_photos(self, photos: list[Path]) -> None:
        """Copy sample photos into raw/ with the sample's labels.csv, as a brand labels its
        library: with the offline encoder only the labels can vouch for a search (the
        relevance floor), so an unlabelled library answers every description with nothing."""
        raw = self.home / "volume" / "raw"
        for p in photos:
            shutil.copy(p, raw / p.name)
        shutil.copy(PETS / "labels.csv", raw / "labels.csv")

    # Every photo of the sample is labelled a dog or a cat, so this finds all of them.
    def search_paths(self, query: str = "a dog or a cat", k: int = 50) -> list[str] | None:
        code, out = self.adrag_here("search", query, "-k", str(k), "--json")
        return [h["path"] for h in json.loads(out)] if code == 0 else None

    def processes(self) -> list[psutil.Process]:
        """`adrag up` and every process under it, as they are now."""
        if not (self.proc and self.proc.poll() is None):
            return []
        up = psutil.Process(self.proc.pid)
        return [up, *up.children(recursive=True)]

    def log_files(self) -> list[Path]:
        logs = sorted((self.home / "logs").glob("*.log")) if (self.home / "logs").exists() else []
        return [p for p in [self.out, *logs] if p.exists()]

    def logs(self) -> str:
        return "\n".join(f"== {p.name} ==\n{p.read_text()[-6000:]}" for p in self.log_files())


def new_stack(tmp_path: Path, **extra: str) -> Stack:
    """A stack (not started) on an empty home under ``tmp_path``, the tiny encoder, sensors
    every 3 s; ``extra`` adds to its environment."""
    home = tmp_path / "home"
    (home / "volume" / "raw").mkdir(parents=True)
    env = {
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": "random:adrag-tiny@1",
        "ADRAG_PRECISION": "fp32",
        "ADRAG_SENSOR_INTERVAL": "3",
        "DAGSTER_HOME": str(home / "dagster"),
        **extra,
    }
    for key in ("ADRAG_VOLUME", "ADRAG_DAGSTER_PG_URL"):
        os.environ.pop(key, None)
    return Stack(env, home)


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, stack: Stack, every: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}\n{stack.logs()}")
