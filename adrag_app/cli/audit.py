"""``adrag audit``: the audit job's checks (every vector, every id of the index), in-process."""

from __future__ import annotations

from dataclasses import dataclass

from adrag_assets.settings import Settings


@dataclass
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    metadata: dict

    def as_dict(self) -> dict:
        return {
            "asset": self.asset,
            "check": self.check,
            "passed": self.passed,
            "metadata": self.metadata,
        }


def run_audit(s: Settings, verbose: bool) -> tuple[str, bool, list[CheckOutcome], list[str]]:
    """Run the audit's checks once: (run id, run succeeded, each check's outcome, failures)."""
    import dagster as dg

    from adrag_app.cli import _run_problems
    from adrag_assets.dead_runs import process_tags
    from adrag_assets.defs.audit import AUDIT_CHECKS
    from adrag_assets.defs.embeddings import image_embeddings
    from adrag_assets.defs.index import image_index
    from adrag_assets.defs.photos import images
    from adrag_assets.defs.resources import resources_from_settings
    from adrag_assets.instance import dagster_instance

    instance = dagster_instance(s.dagster_home, postgres=bool(s.dagster_pg_url))
    level = "INFO" if verbose else "CRITICAL"
    result = dg.materialize(
        [images, image_embeddings, image_index, *AUDIT_CHECKS],
        selection=dg.AssetSelection.checks(*AUDIT_CHECKS),
        resources=resources_from_settings(s),
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
        raise_on_error=False,
        tags={"adrag/source": "cli", **process_tags()},
    )
    outcomes = [
        CheckOutcome(
            e.event_specific_data.asset_key.to_user_string(),
            e.event_specific_data.check_name,
            e.event_specific_data.passed,
            {k: v.value for k, v in e.event_specific_data.metadata.items()},
        )
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    _, failures = _run_problems(instance, result.run_id)
    return result.run_id, result.success, outcomes, failures
