"""Where a running `adrag up` serves its index, so other shells of the same home can tell.

`adrag up` writes ``$ADRAG_HOME/stack.json`` (its pid and start time, the Milvus URI every
process it started uses, the Dagster and app URLs) once the stack is up, and removes it when
it stops. A command run in another shell with another ``ADRAG_MILVUS_URI`` (typically none:
the Milvus Lite file) reads and writes a separate index while the stack serves its own; it
says so in one line on stderr, naming the URI to export. The stack's index still catches up
from Delta by itself (the ``index_follows_delta`` sensor); the line tells the user which index
they are looking at. A record whose process is gone (`adrag up` killed with SIGKILL) or
belongs to a reused pid is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from urllib.parse import urlparse

import psutil

from adrag_assets.redact import redact_text

RECORD = "stack.json"
LOCALHOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def record_path(home: Path) -> Path:
    return home / RECORD


def write_record(home: Path, milvus_uri: str, dagster_url: str, app_url: str) -> Path:
    """Record that this process serves ``milvus_uri`` for ``home`` (atomically)."""
    path = record_path(home)
    record = {
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
        # The URI as every service got it; a token is never part of it (ADRAG_MILVUS_TOKEN).
        "milvus_uri": redact_text(milvus_uri),
        "dagster_url": dagster_url,
        "app_url": app_url,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD}.{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path


def remove_record(home: Path) -> None:
    """Remove the record if it is this process's (a newer stack's record stays)."""
    path = record_path(home)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def running_stack(home: Path) -> dict | None:
    """The record of the `adrag up` serving ``home``, if that process still runs."""
    try:
        record = json.loads(record_path(home).read_text())
        proc = psutil.Process(int(record["pid"]))
        # A pid reused by another process has another start time.
        if abs(proc.create_time() - float(record["started"])) > 1:
            return None
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    return record


def same_uri(a: str, b: str) -> bool:
    """Whether two Milvus URIs name the same index (a file by its real path; a server by
    scheme, port and host, the loopback names counting as one)."""
    if ("://" in a) != ("://" in b):
        return False
    if "://" not in a:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    pa, pb = urlparse(a), urlparse(b)

    def host(h: str | None) -> str:
        h = (h or "").lower()
        return "127.0.0.1" if h in LOCALHOSTS else h

    return (pa.scheme, host(pa.hostname), pa.port) == (pb.scheme, host(pb.hostname), pb.port)


def other_index_warning(home: Path, milvus_uri: str) -> str | None:
    """One line when a running `adrag up` for ``home`` serves another index than
    ``milvus_uri``; None otherwise."""
    stack = running_stack(home)
    if stack is None or same_uri(stack["milvus_uri"], milvus_uri):
        return None
    served = stack["milvus_uri"]
    return (
        f"warning: `adrag up` (pid {stack['pid']}) serves this home's index at {served}, but "
        f"this shell uses {redact_text(milvus_uri)}, another index; run "
        f"`export ADRAG_MILVUS_URI={served}` to use the stack's (it catches up from the "
        f"tables by itself)"
    )
