"""Asset checks: each looks at what its asset just wrote and says what is off, with counts."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np

from adrag_assets import volume as vol
from adrag_assets.milvus_index import MilvusIndex
from adrag_assets.tables import Tables

SHOWN = 10  # examples listed in a failing check's metadata


def rejected_markdown(tables: Tables) -> str:
    rows = tables.read("rejected_images", ["path", "reason"]).to_pylist()
    if not rows:
        return "_none_"
    lines = [f"- `{r['path']}`: {r['reason']}" for r in rows[:50]]
    if len(rows) > 50:
        lines.append(f"- … and {len(rows) - 50} more")
    return "\n".join(lines)


def coverage(volume: Path, tables: Tables) -> dg.AssetCheckResult:
    photos, sidecars = vol.scan(volume)
    known = set(tables.read("volume_files", ["path"]).column("path").to_pylist())
    known |= set(tables.read("rejected_images", ["path"]).column("path").to_pylist())
    missing = sorted(p.path for p in photos if p.path not in known)
    return dg.AssetCheckResult(
        asset_key="images",
        check_name="every_file_accounted_for",
        passed=not missing,
        metadata={
            "photo_files": len(photos),
            "sidecars": len(sidecars),
            "unaccounted": len(missing),
            "examples": dg.MetadataValue.json(missing[:SHOWN]),
        },
    )


def unit_vectors(matrix: np.ndarray, ids: list[str], tol: float = 1e-3) -> dg.AssetCheckResult:
    if matrix.size == 0:
        bad: list[str] = []
        worst = 0.0
    else:
        norms = np.linalg.norm(matrix, axis=1)
        finite = np.isfinite(matrix).all(axis=1)
        ok = finite & (np.abs(norms - 1.0) <= tol)
        bad = [ids[i] for i in np.flatnonzero(~ok)]
        worst = float(np.nanmax(np.abs(norms - 1.0))) if finite.any() else float("inf")
    return dg.AssetCheckResult(
        check_name="vectors_finite_and_unit_norm",
        passed=not bad,
        metadata={
            "vectors": len(ids),
            "bad": len(bad),
            "max_norm_error": worst,
            "examples": dg.MetadataValue.json(bad[:SHOWN]),
        },
    )


def index_matches(
    tables: Tables, index: MilvusIndex, collection: str, encoder_id: str
) -> dg.AssetCheckResult:
    table_ids = set(
        tables.read("image_embeddings", ["image_id"], f"encoder_id = '{encoder_id}'")
        .column("image_id")
        .to_pylist()
    )
    index_ids = index.ids(collection)
    missing, extra = sorted(table_ids - index_ids), sorted(index_ids - table_ids)
    return dg.AssetCheckResult(
        check_name="index_matches_embeddings",
        passed=not missing and not extra,
        metadata={
            "table_rows": len(table_ids),
            "index_rows": len(index_ids),
            "missing_from_index": len(missing),
            "extra_in_index": len(extra),
            "examples": dg.MetadataValue.json((missing + extra)[:SHOWN]),
        },
    )
