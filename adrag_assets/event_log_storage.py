"""Dagster's SQLite event log, with a pool slot taken by one atomic compare-and-set.

Dagster 1.13's SQL storage claims a slot in two statements: it selects a free slot row, then
updates that row by id without checking that it is still free. Postgres serializes the pair
with ``SELECT ... FOR UPDATE``; SQLite ignores that clause, so two processes claiming at the
same moment (two ``adrag ingest`` opening a fresh instance together, released by the same lock)
both "win" the pool's one slot and their writer steps overlap. Here the claim is a single
``UPDATE ... WHERE step_key IS NULL``: SQLite runs it under its write lock, so at most one
process takes a slot and the other stays blocked and retries, as Dagster intends.

adrag's ``dagster.yaml`` (:mod:`adrag_assets.instance`) names this class as the event log
storage; everything else is Dagster's own ``SqliteEventLogStorage``, at its default location.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._serdes import ConfigurableClassData
from dagster._utils.concurrency import ConcurrencySlotStatus


class AtomicSlotSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` under ``<dagster_home>/history/runs`` with atomic slot claims."""

    def __init__(self, dagster_home: str, inst_data: ConfigurableClassData | None = None):
        # Dagster's default place for the SQLite event log, so existing history stays readable.
        super().__init__(os.path.join(dagster_home, "history", "runs", ""), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"dagster_home": dg.StringSource}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> AtomicSlotSqliteEventLogStorage:
        return cls(dagster_home=config_value["dagster_home"], inst_data=inst_data)

    def _claim_concurrency_slot(
        self, concurrency_key: str, run_id: str, step_key: str
    ) -> ConcurrencySlotStatus:
        slots = ConcurrencySlotsTable.c
        free = (
            db.select(slots.id)
            .where(
                slots.concurrency_key == concurrency_key,
                slots.step_key.is_(None),
                slots.deleted.is_(False),
            )
            .limit(1)
            .scalar_subquery()
        )
        with self.index_connection() as conn:
            taken = conn.execute(
                ConcurrencySlotsTable.update()
                .where(slots.id == free, slots.step_key.is_(None))
                .values(run_id=run_id, step_key=step_key)
            ).rowcount
        return ConcurrencySlotStatus.CLAIMED if taken else ConcurrencySlotStatus.BLOCKED
