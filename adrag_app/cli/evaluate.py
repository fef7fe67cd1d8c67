"""``adrag eval``: materialize ``retrieval_eval`` on the persistent instance and print it."""

from __future__ import annotations

import json
import sys

import click

from adrag_assets.settings import Settings

SHOWN_MODES = ("dense", "text", "hybrid")


@click.command("eval")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def evaluate(ctx: click.Context, as_json: bool) -> None:
    """Retrieval quality of the configured encoder over the labelled photos in the index."""
    import dagster as dg

    from adrag_assets.defs.evaluation import retrieval_eval
    from adrag_assets.defs.resources import resources_from_settings
    from adrag_assets.embeddings.spec import EncoderError, EncoderSpec
    from adrag_assets.index.milvus import MilvusIndex, collection_name
    from adrag_assets.instance import dagster_instance

    s: Settings = ctx.obj["settings"]
    try:
        encoder_id = EncoderSpec.parse(s.encoder).encoder_id
    except EncoderError as e:
        _fail(str(e))
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    try:
        # Checked here, before a run: "ingest first" reads better than a failed run.
        indexed = index.client.has_collection(collection_name(encoder_id))
    except ConnectionError as e:
        _fail(str(e))
    finally:
        index.close()  # a Milvus Lite file is held by one client at a time
    if not indexed:
        _fail(f"encoder {encoder_id} has nothing indexed yet: run `adrag ingest` first")
    level = "INFO" if ctx.obj["verbose"] else "WARNING"
    result = dg.materialize(
        [retrieval_eval],
        resources=resources_from_settings(s),
        instance=dagster_instance(s.dagster_home),
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
        raise_on_error=False,
        tags={"adrag/source": "cli"},
    )
    if not result.success:
        _fail(f"evaluation run {result.run_id} failed; see `adrag -v eval` or the Dagster UI")
    [event] = result.get_asset_materialization_events()
    summary = event.event_specific_data.materialization.metadata["summary"].value
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"encoder: {summary['encoder_id']}  ({summary['labelled']} labelled photos)")
    if not summary["per_label"]:
        click.echo("no label column with 2+ values of 2+ photos each: nothing to evaluate")
        return
    for column, means in summary["per_column"].items():
        n = len(summary["per_label"][column])
        click.echo(
            f"  {column} ({n} classes): zero-shot top-1 {means['zero_shot_top1']:.3f}, "
            f"top-5 {means['zero_shot_top5']:.3f}"
        )
        for mode in SHOWN_MODES:
            stats = "  ".join(
                f"{name} {means[f'{mode}_{key}']:.3f}"
                for name, key in (("P@1", "p_at_1"), ("P@3", "p_at_3"), ("P@10", "p_at_10"))
                + (("mAP", "map"),)
            )
            click.echo(f"    {mode:6}  {stats}")
    click.echo(f"run {result.run_id} succeeded")
    if EncoderSpec.parse(s.encoder).is_random:
        click.secho("note: random weights: zero-shot is at chance by design", fg="yellow")


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)
