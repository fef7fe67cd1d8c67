"""Paid generations a day, per user and for the whole brand, counted in a Delta table.

The table (``generations`` beside adrag's other tables) holds one row per reservation: who,
which UTC day, how many model calls. A reservation is appended first and checked after, at
the table version of its own commit: every commit has its own version, so of two processes
reserving at once the later one sees the earlier one's row and only one of them can take the
last place. A reservation over a limit is deleted again and refused before anything is spent;
one whose generation failed is given back. A restart or a second app process starts from the
same table, so neither resets the count.

Local compositor generations are free: they never reach this module.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from adrag_assets.settings import Settings
from adrag_assets.tables import Tables

TABLE = "generations"
SCHEMA = pa.schema(
    [
        ("reservation", pa.string()),
        ("day", pa.string()),  # YYYY-MM-DD, UTC
        ("user", pa.string()),  # the signed-in subject, or the laptop user
        ("calls", pa.int32()),
        ("reserved_at", pa.timestamp("us", tz="UTC")),
    ]
)
_MARK = "adrag.reservation"
_HISTORY = 200  # commits looked back to find one's own (far more than concurrent writers)


class LimitReached(PermissionError):
    """Over a daily limit: one sentence, and nothing was spent."""


@dataclass(frozen=True)
class Reservation:
    id: str
    calls: int


class Spending:
    """The daily counts under ``root`` (a folder or an object-store URL of Delta tables)."""

    def __init__(
        self,
        root: str | Path,
        *,
        per_user: int = 0,
        per_brand: int = 0,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.uri = f"{str(root).rstrip('/')}/{TABLE}"
        self.per_user = per_user
        self.per_brand = per_brand
        self.storage_options = storage_options

    @classmethod
    def from_settings(cls, settings: Settings) -> Spending:
        return cls(
            settings.tables_uri,
            per_user=settings.app.generations_per_day,
            per_brand=settings.app.brand_generations_per_day,
            storage_options=Tables(settings.tables_uri).storage_options,
        )

    @property
    def limited(self) -> bool:
        return bool(self.per_user or self.per_brand)

    def _open(self, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def used(self, user: str, day: date | None = None) -> tuple[int, int]:
        """(calls by ``user``, calls by everybody) on ``day`` (default: today, UTC)."""
        table = self._open()
        return _counts(table, user, (day or _today()).isoformat()) if table else (0, 0)

    def reserve(self, user: str, calls: int, day: date | None = None) -> Reservation:
        """Reserve ``calls`` paid generations for ``user`` today, or raise :class:`LimitReached`
        (nothing reserved). No limit configured: nothing is recorded."""
        if not self.limited or calls <= 0:
            return Reservation("", 0)
        if "://" not in self.uri:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        day_s = (day or _today()).isoformat()
        rid = secrets.token_hex(8)
        row = pa.Table.from_pylist(
            [{"reservation": rid, "day": day_s, "user": user, "calls": calls,
              "reserved_at": datetime.now(UTC)}],
            schema=SCHEMA,
        )  # fmt: skip
        self._append(row, rid)
        version = self._version_of(rid)
        mine, everybody = _counts(self._open(version), user, day_s)
        if self.per_user and mine > self.per_user:
            self._delete(rid)
            raise LimitReached(
                f"You have used your {self.per_user} paid generations for today "
                f"(ADRAG_GENERATIONS_PER_DAY); nothing was generated or charged."
            )
        if self.per_brand and everybody > self.per_brand:
            self._delete(rid)
            raise LimitReached(
                f"The brand has used its {self.per_brand} paid generations for today "
                f"(ADRAG_BRAND_GENERATIONS_PER_DAY); nothing was generated or charged."
            )
        return Reservation(rid, calls)

    # Two processes creating the table at once: one commit loses ("Metadata changed since last
    # commit") and left nothing in the table, so appending again is safe.
    @retry(
        retry=retry_if_exception_type(CommitFailedError),
        stop=stop_after_attempt(5),
        wait=wait_random(0.05, 0.5),
        reraise=True,
    )
    def _append(self, row: pa.Table, rid: str) -> None:
        write_deltalake(
            self.uri,
            row,
            mode="append",
            storage_options=self.storage_options,
            commit_properties=CommitProperties(custom_metadata={_MARK: rid}),
        )

    def give_back(self, reservation: Reservation) -> None:
        """Forget ``reservation`` (its generation failed before anything was spent)."""
        if reservation.id:
            self._delete(reservation.id)

    def _delete(self, rid: str) -> None:
        table = self._open()
        if table is not None:
            table.delete(f"reservation = '{rid}'")

    def _version_of(self, rid: str) -> int:
        table = self._open()
        assert table is not None  # just written
        for entry in table.history(_HISTORY):
            if entry.get(_MARK) == rid:
                return int(entry["version"])
        raise RuntimeError(f"the reservation {rid} is not in the last {_HISTORY} commits")


def _counts(table: DeltaTable | None, user: str, day: str) -> tuple[int, int]:
    if table is None:
        return 0, 0
    # deltalake's own engine, not a pyarrow scanner (see adrag_assets.tables.Tables.query).
    sql = f"SELECT user, calls FROM {TABLE} WHERE day = '{day}'"
    qb = QueryBuilder().register(TABLE, table)
    rows = pa.RecordBatchReader.from_stream(qb.execute(sql)).read_all()
    users, calls = rows.column("user").to_pylist(), rows.column("calls").to_pylist()
    return (
        sum(c for u, c in zip(users, calls, strict=True) if u == user),
        sum(calls),
    )


def _today() -> date:
    return datetime.now(UTC).date()
