"""`adrag up`: the whole stack as services, in the foreground, until Ctrl-C or SIGTERM.

* a ``milvus-lite server`` on localhost when the index needs one, so the Dagster daemon,
  its runs, the CLI and the app share one index (a Milvus Lite file allows one process);
* ``dg dev`` (Dagster's webserver + daemon) on adrag's code location;
* the marketers' Streamlit app (``adrag_app/ui/app.py``).

All of them get one DAGSTER_HOME, whose dagster.yaml ``adrag up`` writes (and opens once)
before starting them; with ``ADRAG_DAGSTER_PG_URL`` set it names PostgreSQL, so the webserver,
the daemon, the runs it launches and any `adrag ingest` from another shell with the same
variables record in one instance. The URL reaches them through the environment only.

Each child runs in its own process group, so stopping the stack stops their children too:
all at once, SIGKILL after a short grace (gone within 10 s of SIGTERM). The Milvus server is
started again, after a backoff, when it dies; any other service that ends stops the stack.
If `adrag up` itself dies, even by SIGKILL, its orphan guard (``orphan_guard.py``) stops those
groups, and on Linux each child also gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import click

from adrag_app.cli import orphan_guard
from adrag_assets.instance import dagster_instance
from adrag_assets.redact import redact_text
from adrag_assets.settings import Settings, child_environment

BIN = Path(sys.executable).parent
LOCALHOSTS = {"localhost", "127.0.0.1", "::1"}
DEFAULT_MILVUS_PORT = 19530
APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"  # the Streamlit app
ORPHAN_GUARD = Path(__file__).with_name("orphan_guard.py")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class StackError(RuntimeError):
    pass


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_free(port: int, what: str) -> None:
    if port_open(port):
        raise StackError(f"port {port} for {what} is taken: stop what uses it or pick another")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milvus_plan(settings: Settings, milvus_port: int | None) -> tuple[str, int | None]:
    """(the URI every process should use, the port to start a milvus-lite server on or None)."""
    from adrag_assets.index.milvus import is_local_file_uri  # pymilvus: only where needed

    uri = settings.milvus_uri
    if is_local_file_uri(uri):
        port = milvus_port or DEFAULT_MILVUS_PORT
        require_free(port, "the Milvus Lite server")
        return f"http://127.0.0.1:{port}", port
    parsed = urlparse(uri)
    if parsed.hostname in LOCALHOSTS and parsed.port and not port_open(parsed.port):
        return uri, parsed.port
    return uri, None  # a Milvus that already answers, or a remote one: start nothing


def die_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when this process dies
    (Linux only; None elsewhere). Only the child itself: the orphan guard stops its group."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return preexec


# Stopping: every service and its children are asked at once (in parallel, each stops in its
# own time), and what is still there after the grace period is killed with its group, so
# `adrag up` is gone within 10 s of SIGTERM. Left alone, dg dev can take 15 s and more: it
# waits on its code servers, which the signal to its group already stopped.
STOP_GRACE_S = 5.0
# A restartable service that dies (the Milvus server, kill -9, the OOM killer) is started
# again after a backoff that doubles up to its cap; one that stayed up this long starts over.
RESTART_BACKOFF_S = (1.0, 30.0)
RESTART_RESET_AFTER_S = 60.0


@dataclass
class Service:
    """How to start a service again, and its restart state."""

    cmd: list[str]
    env: dict[str, str]
    log: Path
    stop_signal: int
    restart: bool
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = RESTART_BACKOFF_S[0]
    restart_at: float | None = None


@dataclass
class Stack:
    settings: Settings
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    guard: subprocess.Popen | None = None
    services: dict[str, Service] = field(default_factory=dict)

    def start_guard(self) -> None:
        """Start the orphan guard, which stops every service if this process dies."""
        self.guard = subprocess.Popen(
            [sys.executable, "-I", str(ORPHAN_GUARD)],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,  # out of reach of the terminal's Ctrl-C
        )

    def start(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        log: Path,
        *,
        restart: bool = False,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        """Start ``name``; with ``restart`` it is started again whenever it dies (see
        :meth:`supervise`). ``stop_signal`` asks its process group to stop (SIGKILL follows
        after the grace)."""
        self.services[name] = Service(cmd, env, log, stop_signal, restart)
        self._launch(name)

    def _launch(self, name: str) -> subprocess.Popen:
        service = self.services[name]
        service.log.parent.mkdir(parents=True, exist_ok=True)
        with service.log.open("ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                service.cmd,
                env=service.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_this_process(),
            )
        service.started_at = time.monotonic()
        self.procs = [(n, p) for n, p in self.procs if n != name] + [(name, proc)]
        self._tell_guard(str(proc.pid))  # its process group id
        click.echo(f"started {name} (pid {proc.pid}), log: {service.log}")
        return proc

    def supervise(self) -> None:
        """Start again each restartable service that died, after its backoff; one line each
        time it dies and each time it is started again."""
        now = time.monotonic()
        for name, proc in list(self.procs):
            service = self.services.get(name)
            if not (service and service.restart) or proc.poll() is None:
                continue
            if service.restart_at is None:
                if now - service.started_at >= RESTART_RESET_AFTER_S:
                    service.backoff = RESTART_BACKOFF_S[0]
                delay = service.backoff
                service.backoff = min(service.backoff * 2, RESTART_BACKOFF_S[1])
                service.restart_at = now + delay
                click.echo(
                    f"{name} (pid {proc.pid}) exited with {exit_reason(proc.returncode)}; "
                    f"starting it again in {delay:.0f}s; log: {service.log}",
                    err=True,
                )
            elif now >= service.restart_at:
                service.restart_at = None
                service.restarts += 1
                # Its process group is gone with it, or goes now: a new one takes its place.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                self._launch(name)

    def _tell_guard(self, line: str) -> None:
        if self.guard and self.guard.stdin:
            with contextlib.suppress(OSError):  # a guard gone only costs the safety net
                self.guard.stdin.write(line + "\n")
                self.guard.stdin.flush()

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        # A second Ctrl-C or SIGTERM must not cut the shutdown short and orphan children.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                service = self.services.get(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, service.stop_signal if service else signal.SIGTERM)
        # All at once: each service's grace runs in parallel, not one after the other.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for _, p in self.procs):
            time.sleep(0.1)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                click.echo(f"{name} did not stop in {grace:.0f}s: killing it", err=True)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # what is left
                os.killpg(proc.pid, signal.SIGKILL)
        reaped = time.monotonic() + 2
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.01, reaped - time.monotonic()))
        self.procs.clear()
        if self.guard:
            self._tell_guard(orphan_guard.DONE)
            with contextlib.suppress(OSError):
                self.guard.stdin.close()
            try:
                self.guard.wait(2)
            except subprocess.TimeoutExpired:  # nothing left for it to guard
                self.guard.kill()
            self.guard = None

    def exited(self) -> tuple[str, int] | None:
        """A service that ended and is not restarted: (its name, its exit code)."""
        for name, proc in self.procs:
            service = self.services.get(name)
            if proc.poll() is not None and not (service and service.restart):
                return name, proc.returncode
        return None


def exit_reason(returncode: int) -> str:
    """``code 1`` or ``signal 9 (SIGKILL)``, from a Popen return code."""
    if returncode >= 0:
        return f"code {returncode}"
    try:
        return f"signal {-returncode} ({signal.Signals(-returncode).name})"
    except ValueError:
        return f"signal {-returncode}"


def wait_until(check, what: str, timeout: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if gone := stack.exited():
            raise StackError(f"{gone[0]} exited with code {gone[1]} before {what} was ready")
        time.sleep(0.5)
    raise StackError(f"{what} was not ready after {timeout:.0f}s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def postgres_place(url: str) -> str:
    """``HOST:PORT/DATABASE`` of a PostgreSQL URL: where runs go, shown without credentials."""
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port or 5432}{parsed.path}"


def open_instance(settings: Settings) -> Path:
    """Write DAGSTER_HOME's dagster.yaml and open the instance once, before any service starts.

    The one opening creates the run storage's schema (SQLite files or PostgreSQL tables), so
    the webserver and the daemon, starting together, never race to create it; and a
    PostgreSQL that cannot be reached stops `adrag up` with one line instead of two crashed
    services. Every child gets this DAGSTER_HOME, and ADRAG_DAGSTER_PG_URL only through its
    environment: Dagster passes the instance to its children on their command lines as the
    yaml's ``env: ADRAG_DAGSTER_PG_URL``, never the URL itself.
    """
    url = settings.dagster_pg_url
    where = (
        f"PostgreSQL at {postgres_place(url)} (ADRAG_DAGSTER_PG_URL)"
        if url
        else f"the Dagster instance in {settings.dagster_home}"
    )
    try:
        if url:
            # One attempt first: Dagster's own connection retries take ~10 s to give up.
            check_postgres(url)
        with dagster_instance(settings.dagster_home, postgres=bool(url)):
            pass
    except Exception as e:  # whatever the driver raises: psycopg2, SQLAlchemy, sqlite3
        raise StackError(f"cannot open {where}: {reason(e, url)}") from None
    return settings.dagster_home


def check_postgres(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def reason(error: BaseException, secret: str) -> str:
    """The first line of the innermost cause (the driver's own words), without secrets."""
    while error.__cause__ is not None:
        error = error.__cause__
    error = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return redact_text(lines[0], [secret])[:300]


def workspace_file(settings: Settings) -> Path:
    """A workspace.yaml in DAGSTER_HOME naming the code location "adrag", from anywhere."""
    path = settings.dagster_home / "workspace.yaml"
    path.write_text(
        "load_from:\n  - python_module:\n      module_name: adrag_assets.definitions\n"
        "      location_name: adrag\n"
    )
    return path


def streamlit_auth_configured(cwd: Path | None = None) -> bool:
    """Whether the app will ask for sign-in: an ``[auth]`` table in a ``secrets.toml``
    Streamlit reads (``.streamlit/`` in the working folder, then in the home folder)."""
    for folder in ((cwd or Path.cwd()) / ".streamlit", Path.home() / ".streamlit"):
        path = folder / "secrets.toml"
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise StackError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
        if isinstance(data.get("auth"), dict) and data["auth"]:
            return True
    return False


def check_exposure(address: str, insecure_no_auth: bool, cwd: Path | None = None) -> None:
    """Refuse to serve the app beyond this machine without sign-in, unless told to."""
    if address in LOCALHOSTS or insecure_no_auth or streamlit_auth_configured(cwd):
        return
    raise StackError(
        f"the app would listen on {address} without sign-in: anyone who can reach it could "
        "search every photo, read every ad and spend the brand's generation credit. Configure "
        "[auth] in .streamlit/secrets.toml (README: Sign-in, roles and limits), keep the "
        "default --app-address 127.0.0.1, or pass --insecure-no-auth"
    )


def run_stack(
    settings: Settings,
    dagster_port: int,
    app_port: int,
    milvus_port: int | None,
    app_address: str = "127.0.0.1",
) -> None:
    require_free(dagster_port, "the Dagster UI")
    require_free(app_port, "the app")
    uri, start_milvus_on = milvus_plan(settings, milvus_port)
    dagster_home = open_instance(settings)
    env = child_environment(
        {
            "ADRAG_MILVUS_URI": uri,
            "DAGSTER_HOME": str(dagster_home),
            "ADRAG_HOME": str(settings.home),
            "ADRAG_VOLUME": str(settings.volume),
            "ADRAG_TABLES": str(settings.tables_dir),
            "ADRAG_DAGSTER_URL": f"http://127.0.0.1:{dagster_port}",  # the app links ads there
            "VIRTUAL_ENV": str(BIN.parent),  # dg warns when no venv is named
        }
    )
    logs = settings.home / "logs"
    stack = Stack(settings)
    catchup: subprocess.Popen | None = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    stopped_by_signal = False
    try:
        stack.start_guard()
        # From now on other shells of this home are told which index the stack serves.
        record_serving(
            settings, uri, f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{app_port}"
        )
        if start_milvus_on:
            data = settings.home / "milvus-server"
            stack.start(
                "milvus-lite server",
                [
                    str(BIN / "milvus-lite"),
                    "server",
                    "--data-dir",
                    str(data),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(start_milvus_on),
                ],
                env,
                logs / "milvus.log",
                # Its data outlive it: started again on the same folder and port, every
                # process finds the index where it was. SIGINT drains calls and closes the
                # data cleanly; SIGTERM would end it at once.
                restart=True,
                stop_signal=signal.SIGINT,
            )
        # Dagster and the app need Milvus only once a run or a search comes: they start
        # while it opens its port, and the stack is reported up once both answer.
        stack.start(
            "dg dev",
            [
                str(BIN / "dg"),
                "dev",
                "-w",
                str(workspace_file(settings)),
                "-h",
                "127.0.0.1",
                "-p",
                str(dagster_port),
            ],
            env,
            logs / "dagster.log",
        )
        stack.start(
            "streamlit app",
            [
                str(BIN / "streamlit"),
                "run",
                str(APP),
                "--server.port",
                str(app_port),
                "--server.address",
                app_address,
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                "--client.toolbarMode",
                "viewer",
            ],
            env,
            logs / "app.log",
        )
        if start_milvus_on:
            wait_until(lambda: port_open(start_milvus_on), "Milvus", 60, stack)
        catchup = start_index_catchup(stack, env, logs / "index-catchup.log")
        dagster_url = f"http://127.0.0.1:{dagster_port}"
        wait_until(lambda: http_ok(f"{dagster_url}/server_info"), "the Dagster UI", 180, stack)
        click.secho("\nadrag is up:", bold=True)
        click.echo(f"  Dagster UI   {dagster_url}/asset-groups")
        click.echo(f"  app          http://127.0.0.1:{app_port}")
        if app_address not in LOCALHOSTS:
            click.echo(f"               listening on {app_address} (Dagster: 127.0.0.1 only)")
        click.echo(f"  Milvus       {uri}")
        click.echo(f"  volume       {settings.volume}  (drop photos into raw/)")
        if settings.dagster_pg_url:
            runs = f"PostgreSQL at {postgres_place(settings.dagster_pg_url)}"
        else:
            runs = f"SQLite in {dagster_home}"
        click.echo(f"  Dagster runs {runs}")
        click.echo(
            f"  other shells: export ADRAG_HOME={settings.home} ADRAG_MILVUS_URI={uri}"
            f" ADRAG_ENCODER={settings.encoder}"
        )
        if settings.dagster_pg_url:
            # The value is not printed: it holds the database password.
            click.echo("               and the same ADRAG_DAGSTER_PG_URL")
        click.echo("Ctrl-C stops everything.")
        while not (gone := stack.exited()):
            stack.supervise()
            time.sleep(0.5)
        raise StackError(f"{gone[0]} exited with code {gone[1]}; see {logs}")
    except KeyboardInterrupt:
        click.echo("\nstopping…")
        stopped_by_signal = True
    finally:
        forget_serving(settings)
        stopping = time.monotonic()
        # The catch-up is asked first and waited on while the services stop beside it.
        ask_index_catchup_to_stop(catchup)
        stack.stop()
        stop_index_catchup(catchup)
        click.echo(f"stopped in {time.monotonic() - stopping:.1f}s.")
    if stopped_by_signal:
        exit_now()


def exit_now() -> None:
    """Exit at once, skipping the interpreter's teardown: with Dagster and its ~1,400 modules
    loaded it takes 3-8 s on a loaded machine, and the stack has nothing left to clean (every
    service is stopped, the guard released)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def record_serving(settings: Settings, uri: str, dagster_url: str, app_url: str) -> None:
    """Tell other shells of this home which index the stack serves (adrag_app.cli.serving)."""
    from adrag_app.cli.serving import write_record

    write_record(settings.home, uri, dagster_url, app_url)


def forget_serving(settings: Settings) -> None:
    from adrag_app.cli.serving import remove_record

    remove_record(settings.home)


def start_index_catchup(stack: Stack, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Look once at the index the stack serves and fill it from the tables if it lags, in a
    process of its own while Dagster starts (``index_catchup.py`` says why). A one-shot job,
    not a service: its exit is not the stack's."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "adrag_app.cli.index_catchup"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_this_process(),
    )
    stack._tell_guard(str(proc.pid))  # stopped with the stack if `adrag up` dies
    click.echo(f"started index catch-up from the tables (pid {proc.pid}), log: {log}")

    def reap() -> None:
        # Waited for as soon as it ends (no zombie under `adrag up`), and its outcome shown.
        code = proc.wait()
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        said = next((line for line in reversed(lines) if line.startswith("index: ")), "")
        if code == 0:
            click.echo(f"index catch-up done: {said.removeprefix('index: ')}")
        elif code > 0:  # a negative code: stopped with the stack
            click.echo(f"index catch-up failed ({said or f'exit {code}'}); see {log}", err=True)

    threading.Thread(target=reap, name="index-catchup", daemon=True).start()
    return proc


def ask_index_catchup_to_stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)


def stop_index_catchup(proc: subprocess.Popen | None, grace: float = 2.0) -> None:
    # Short: a run it leaves behind is marked failed by the dead-runs recovery.
    if proc is None or proc.poll() is not None:
        return
    ask_index_catchup_to_stop(proc)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
