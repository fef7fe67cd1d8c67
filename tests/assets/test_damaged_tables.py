"""A Delta table whose newest log entry was overwritten with garbage: every command that
reads the tables says so in one line (which table, which entry, how to recover), the audit
fails its ``audit_tables_open`` check, and the recovery the line advises works.

Real tables, a real Dagster instance, the real `adrag` CLI in subprocesses.
"""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from adrag_assets.defs.audit import audit_tables_open
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import resources_from_settings
from tests.support.cli import error_lines, run_adrag
from tests.support.data import pets_images
from tests.support.helpers import tables_for


def tables_check(settings, instance) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [images, audit_tables_open],
        selection=dg.AssetSelection.checks(audit_tables_open),
        resources=resources_from_settings(settings),
        instance=instance,
        raise_on_error=False,
    )
    (check,) = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return check


@pytest.mark.parametrize("table", ["images", "image_embeddings"])
def test_a_garbled_log_entry_is_one_line_with_the_way_back(env, settings, instance, table):
    for p in sorted(pets_images().glob("*.jpg"))[:3]:
        shutil.copy(p, settings.raw_dir / p.name)
    ingest = run_adrag("ingest", env=env)  # the CLI's own process: it holds the Milvus file
    assert ingest.returncode == 0, ingest.stderr
    assert tables_check(settings, instance).passed

    log = settings.tables_dir / table / "_delta_log"
    newest = sorted(log.glob("*.json"))[-1]
    newest.write_text("garbage{{{ not json\n")

    # Every command on the first table; one (each opens every table first) on the other.
    commands = ("status", "ingest", "maintain", "audit") if table == "images" else ("audit",)
    for command in commands:
        out = run_adrag(command, env=env)
        assert out.returncode == 1, (command, out.stderr)
        assert "Traceback" not in out.stderr and "<unknown>" not in out.stderr, out.stderr
        (line,) = error_lines(out.stderr)
        for text in (f"Delta table {table!r}", f"_delta_log/{newest.name}", "adrag ingest"):
            assert text in line, (command, line)
        assert str(settings.tables_dir) in line  # what to move aside

    check = tables_check(settings, instance)
    assert not check.passed
    assert check.metadata["unreadable"].value == 1
    assert newest.name in check.metadata["tables"].value[table]

    # The way back the line gives: move the tables aside, ingest again.
    shutil.move(settings.tables_dir, settings.tables_dir.with_name("tables.damaged"))
    ingest = run_adrag("ingest", env=env)
    assert ingest.returncode == 0, ingest.stderr
    assert tables_check(settings, instance).passed
    assert tables_for(settings).count("images") == 3
    status = run_adrag("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["index_rows"] == 3
