"""How far an embedding run is: "re-embedding 4,200 / 20,000, about 6 min left".

The run keeps a small JSON file under the home current (``progress/image_embeddings.json``,
replaced atomically after each batch), which ``adrag status`` and the app's sidebar read:
no Dagster import, no event-log query, and it survives the run (a run that died shows its
last news and how old it is). At each Delta commit the run also tells a listener (the asset
records it as Dagster metadata) and logs the line with its rate.

The counts are the encoder's whole job, not one run's: after a model switch, ``done``
starts at the rows the new encoder already has (a run that crashed midway resumes, and the
count goes on from there); while older vectors are re-embedded in bounded runs, ``done``
counts every current row, so the figure climbs across runs to the library's size.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

FILE = Path("progress") / "image_embeddings.json"
RUNNING, DONE, FAILED = "running", "done", "failed"
EMBEDDING, REEMBEDDING = "embedding", "re-embedding"
STALE_AFTER_S = 300  # a running report with no news for this long is shown with its age


@dataclass(frozen=True)
class EmbedProgress:
    encoder_id: str
    kind: str  # EMBEDDING (new photos) or REEMBEDDING (a model switch, or older vectors)
    done: int
    total: int
    rate: float  # images a second in this run so far
    state: str  # RUNNING, DONE or FAILED
    updated_at: str  # ISO time, UTC

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 and left > 0 else None

    def line(self, now: datetime | None = None) -> str:
        """One line for people: "re-embedding 4,200 / 20,000, about 6 min left"."""
        text = f"{self.kind} {self.done:,} / {self.total:,}"
        if self.state == DONE:
            return f"{text}, done"
        if self.state == FAILED:
            return f"{text}, stopped (the run failed)"
        eta = self.eta_s
        text += f", about {_duration(eta)} left" if eta is not None else ""
        age = self.age_s(now)
        return text + (f" (no news for {_duration(age)})" if age > STALE_AFTER_S else "")

    def age_s(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.updated_at)).total_seconds()

    def metadata(self) -> dict[str, object]:
        """For Dagster metadata: counts, rate and ETA in seconds."""
        eta = self.eta_s
        return {
            "progress": self.line(),
            "done": self.done,
            "total": self.total,
            "images_per_s": round(self.rate, 2),
            "eta_s": round(eta, 1) if eta is not None else -1,
        }


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def progress_path(home: Path) -> Path:
    return home / FILE


def read_progress(home: Path) -> EmbedProgress | None:
    """The last report written under ``home``; None when there is none (or it is unreadable:
    a progress line is never worth an error)."""
    try:
        data = json.loads(progress_path(home).read_text("utf-8"))
        return EmbedProgress(**{k: data[k] for k in EmbedProgress.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Progress:
    """A run's progress, told batch by batch (see the module). ``home``: where the file goes
    (None: no file); ``on_commit``: called with the report at each Delta commit."""

    def __init__(
        self,
        home: Path | None = None,
        on_commit: Callable[[EmbedProgress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = progress_path(home) if home is not None else None
        self.on_commit = on_commit
        self.clock = clock
        self.report: EmbedProgress | None = None
        self._started = 0.0
        self._first = 0

    def start(self, encoder_id: str, kind: str, done: int, total: int) -> None:
        self._started, self._first = self.clock(), done
        self.report = EmbedProgress(encoder_id, kind, done, total, 0.0, RUNNING, _now())
        self._write()

    def advance(self, n: int) -> None:
        if self.report is None or n <= 0:
            return
        done = self.report.done + n
        elapsed = self.clock() - self._started
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        self.report = replace(self.report, done=done, rate=rate, updated_at=_now())
        self._write()

    def commit(self) -> EmbedProgress | None:
        """A Delta commit: the listener hears of it; the report is returned (to log)."""
        if self.report is not None and self.on_commit is not None:
            self.on_commit(self.report)
        return self.report

    def finish(self, state: str = DONE) -> None:
        if self.report is None:
            return
        self.report = replace(self.report, state=state, updated_at=_now())
        self._write()
        self.report = None

    def _write(self) -> None:
        if self.path is None or self.report is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self.report)), "utf-8")
        os.replace(tmp, self.path)  # readers never see half a file


def _now() -> str:
    return datetime.now(UTC).isoformat()
