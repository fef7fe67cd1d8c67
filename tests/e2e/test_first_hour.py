"""The README's "first hour", followed literally: its shell lines, run by bash, in both orders.

The commands come from the README's section itself (its ```bash blocks), with only what a
test must change substituted: the repo's `.venv/bin/` is this interpreter's, `$PWD` a temp
folder, `~/Pictures/...` 24 photos of the pet sample, the ports free ones, and the encoder the
tiny test one. `make setup && make demo` is left out (the venv exists; the demo has its own
check). Everything else is real: `adrag ingest` and `adrag status` as subprocesses, a real
`adrag up` (Milvus Lite server, Dagster webserver + daemon, the Streamlit app), the app's page
in Chromium, Dagster's GraphQL. Waits poll for a condition with a deadline (`adrag status` in
this process, with the second shell's exports: a subprocess per poll would pay ~5 s of imports
each time, CPU the stack's runs need; the README's own line is run once the condition holds);
each order prints how long it took from `adrag up`'s start until every photo was searchable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from adrag_app.cli import main as adrag_main
from adrag_app.cli.stack import free_port
from tests.support.data import REPO, pets_images
from tests.support.stack import BIN, CHROMIUM, CHROMIUM_ARGS

PHOTOS = 24
ENCODER = "random:adrag-tiny"
WAIT_S = 240  # a deadline for correctness on a loaded machine, not a performance budget


def readme_blocks() -> list[list[str]]:
    """The ```bash blocks of the README's first-hour section, one list of lines each, with
    comments and the `make` line left out."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## The first hour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    out = []
    for block in blocks:
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
        out.append([line for line in lines if line and not line.startswith("make ")])
    return out


class FirstHour:
    """The README's commands with a test's substitutions, run with bash."""

    def __init__(self, tmp_path: Path):
        self.cwd = tmp_path
        self.library = tmp_path / "Pictures" / "pets"
        self.library.mkdir(parents=True)
        photos = sorted(pets_images().glob("*.jpg"))
        for p in photos[:PHOTOS]:
            shutil.copy(p, self.library / p.name)
        self.upload = photos[200]
        shutil.copy(self.upload, tmp_path / "Pictures" / "rex.jpg")
        self.home = tmp_path / ".adrag"
        self.ports = {"dagster": free_port(), "app": free_port(), "milvus": free_port()}
        self.first, self.second = readme_blocks()
        self.up_proc: subprocess.Popen | None = None
        self.up_out = tmp_path / "adrag-up.out"
        # The README starts from a clean shell: none of this test process's ADRAG_* settings.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ADRAG_", "DAGSTER_"))}

    def line(self, block: list[str], pattern: str) -> str:
        found = [line for line in block if re.search(pattern, line)]
        assert found, f"the README's first hour has no line matching {pattern!r}: {block}"
        return found[0]

    def sub(self, line: str) -> str:
        line = line.replace(".venv/bin/", f"{BIN}/").replace("$PWD", str(self.cwd))
        line = line.replace("~/Pictures", str(self.cwd / "Pictures"))
        line = re.sub(r"random:ViT-B-32\b", ENCODER, line)
        line = line.replace("127.0.0.1:19530", f"127.0.0.1:{self.ports['milvus']}")
        if re.search(r"adrag up\b", line):
            line += (
                f" --dagster-port {self.ports['dagster']} --app-port {self.ports['app']}"
                f" --milvus-port {self.ports['milvus']}"
            )
        return line

    def bash(self, *lines: str, check: bool = True) -> subprocess.CompletedProcess:
        # -u: a line that lost its export must fail, not write under / with $ADRAG_HOME empty.
        script = "set -eu\n" + "\n".join(self.sub(line) for line in lines)
        out = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check:
            assert out.returncode == 0, f"{script}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out

    # The first shell: the export, then the library, ingest and up.
    def export_first(self) -> str:
        return self.line(self.first, r"^export ADRAG_HOME=")

    def copy_library(self) -> None:
        self.bash(
            self.export_first(),
            self.line(self.first, r"^mkdir -p "),
            self.line(self.first, r"^cp -r "),
        )

    def ingest(self) -> subprocess.CompletedProcess:
        return self.bash(self.export_first(), self.line(self.first, r"adrag ingest$"))

    def start_up(self) -> float:
        script = "\n".join(
            [
                "set -eu",
                self.sub(self.export_first()),
                "exec " + self.sub(self.line(self.first, r"adrag up")),
            ]
        )
        started = time.monotonic()
        self.up_proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            stdout=self.up_out.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return started

    def stop_up(self) -> None:
        proc = self.up_proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # bash exec'd into `adrag up`: SIGTERM stops the stack
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)

    # The second shell: the stack's URI, then status and an upload.
    def status(self) -> dict[str, str]:
        out = self.bash(
            self.line(self.second, r"^export .*ADRAG_MILVUS_URI="),
            self.line(self.second, r"adrag status$"),
            check=False,
        )
        if out.returncode != 0:
            return {}
        return dict(
            line.split(None, 1) for line in out.stdout.splitlines() if len(line.split(None, 1)) == 2
        )

    def index_rows_here(self) -> int | None:
        """`adrag status --json`'s index_rows, in this process with the second shell's
        exports and none of this process's ADRAG_* settings."""
        line = self.sub(self.line(self.second, r"^export .*ADRAG_MILVUS_URI="))
        env: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith(("ADRAG_", "DAGSTER_"))
        }
        env.update(word.split("=", 1) for word in shlex.split(line)[1:])
        result = CliRunner().invoke(adrag_main, ["status", "--json"], env=env)
        return json.loads(result.stdout).get("index_rows") if result.exit_code == 0 else None

    def upload_photo(self) -> None:
        self.bash(
            self.line(self.second, r"^export .*ADRAG_MILVUS_URI="),
            self.line(self.second, r"^cp .*volume/raw"),
        )

    def logs(self) -> str:
        parts = [self.up_out, *sorted((self.home / "logs").glob("*.log"))]
        return "\n".join(f"== {p.name} ==\n{p.read_text()[-4000:]}" for p in parts if p.exists())

    def wait(self, check, what: str, every: float = 1.0) -> float:
        """Poll ``check`` until true; seconds it took. Fails with the stack's logs."""
        start = time.monotonic()
        while time.monotonic() - start < WAIT_S:
            if self.up_proc is not None and self.up_proc.poll() is not None:
                raise AssertionError(f"adrag up exited while waiting for {what}\n{self.logs()}")
            if check():
                return time.monotonic() - start
            time.sleep(every)
        raise AssertionError(f"gave up after {WAIT_S}s waiting for {what}\n{self.logs()}")

    def every_photo_indexed(self, n: int) -> bool:
        return self.index_rows_here() == n

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['dagster']}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            body = json.loads(r.read())
        assert "errors" not in body, body
        return body["data"]

    def runs(self) -> list[dict]:
        return self.graphql(
            "{ runsOrError(limit: 200) { ... on Runs { results { runId jobName status "
            "tags { key value } } } } }"
        )["runsOrError"]["results"]


@pytest.fixture
def first_hour(tmp_path):
    fh = FirstHour(tmp_path)
    yield fh
    fh.stop_up()


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def succeeded(runs: list[dict], predicate) -> list[dict]:
    return [r for r in runs if r["status"] == "SUCCESS" and predicate(r)]


def app_shows(fh: FirstHour, text: str) -> None:
    """The app's page shows ``text`` (its sidebar's index line), in Chromium; reloaded until
    it does, since the app caches the index's health for a little while."""
    url = f"http://127.0.0.1:{fh.ports['app']}"
    fh.wait(lambda: _http_ok(f"{url}/_stcore/health"), "the app to answer")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: `make setup` installs it")
        return  # the HTTP check above is what can be checked without a browser
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def shown() -> bool:
                page.goto(url, timeout=60_000)
                try:
                    page.get_by_text(text).first.wait_for(timeout=15_000)
                    return True
                except Exception:
                    return False

            fh.wait(shown, f"the app to show {text!r}", every=0.5)
        finally:
            browser.close()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_ingest_then_up_then_upload(first_hour):
    """The README's order: ingest into the Milvus Lite file, then `adrag up`, whose fresh
    server is filled from Delta by the index_follows_delta sensor; then an upload."""
    fh = first_hour
    fh.copy_library()
    out = fh.ingest()
    assert re.search(r"run \S+ succeeded", out.stdout), out.stdout
    started = fh.start_up()
    fh.wait(lambda: fh.every_photo_indexed(PHOTOS), f"{PHOTOS} photos in the stack's index")
    took = time.monotonic() - started
    print(f"\nadrag ingest, then adrag up: every photo searchable {took:.1f}s after up started")
    status = fh.status()  # the README's line says so too
    assert status["milvus_uri"] == f"http://127.0.0.1:{fh.ports['milvus']}"
    assert status["embeddings"] == status["index_rows"] == str(PHOTOS), status
    app_shows(fh, f"{PHOTOS} photos")

    # An upload into raw/ from the second shell: searchable with nobody running anything.
    fh.upload_photo()
    fh.wait(lambda: fh.every_photo_indexed(PHOTOS + 1), "the upload in the stack's index")
    assert fh.status()["index_rows"] == str(PHOTOS + 1)

    # Dagster lists it all: the CLI's ingest, the index filled from Delta (by `adrag up`'s
    # catch-up, or by the index_follows_delta sensor if it looked first), the upload's run.
    runs = fh.runs()
    assert succeeded(runs, lambda r: tag(r, "adrag/source") == "cli"), runs
    assert succeeded(
        runs,
        lambda r: (
            tag(r, "adrag/source") == "up" or tag(r, "dagster/sensor_name") == "index_follows_delta"
        ),
    ), runs
    assert succeeded(runs, lambda r: tag(r, "dagster/sensor_name") == "raw_photos_sensor"), runs


def test_up_then_ingest_elsewhere(first_hour):
    """The other order: the stack first, then `adrag ingest` in a shell without the stack's
    ADRAG_MILVUS_URI. It writes the Milvus Lite file, says that the stack serves another
    index, and the stack's index catches up from Delta by itself."""
    fh = first_hour
    started = fh.start_up()
    fh.wait(lambda: (fh.home / "stack.json").exists(), "adrag up to record where it serves")
    fh.copy_library()
    out = fh.ingest()
    served = f"http://127.0.0.1:{fh.ports['milvus']}"
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: `adrag up`")]
    assert len(warnings) == 1 and f"export ADRAG_MILVUS_URI={served}" in warnings[0], out.stderr
    fh.wait(lambda: fh.every_photo_indexed(PHOTOS), f"{PHOTOS} photos in the stack's index")
    took = time.monotonic() - started
    print(f"\nadrag up, then adrag ingest elsewhere: every photo searchable {took:.1f}s after up")
    assert fh.status()["index_rows"] == str(PHOTOS)  # the README's line says so too
    app_shows(fh, f"{PHOTOS} photos")
    # The second shell, with the stack's URI, is not warned.
    second = fh.bash(
        fh.line(fh.second, r"^export .*ADRAG_MILVUS_URI="), fh.line(fh.second, r"adrag status$")
    )
    assert "warning" not in second.stderr, second.stderr

    # Stopped, the stack no longer claims the home: the same ingest says nothing.
    fh.stop_up()
    assert not (fh.home / "stack.json").exists()
    again = fh.ingest()
    assert "warning: `adrag up`" not in again.stderr, again.stderr
