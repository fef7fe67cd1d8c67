"""The ``adrag`` command line: ingest, search and status over the configured volume/index.

Every command reads the same ``ADRAG_*`` variables (see :mod:`adrag_assets.settings`), so
commands compose in scripts and see what Dagster runs see.

Each command imports what it needs inside its body: torch and open_clip cost seconds, Dagster
and MLflow about one each, pymilvus half of one; `adrag --help`, a usage error and `adrag
status` pay for none of them (a test checks status and help in a fresh process).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from adrag_app.cli.chat import chat
from adrag_app.cli.errors import Group, Text, fail, one_line, quiet_milvus_logs
from adrag_app.cli.evaluate import evaluate
from adrag_app.cli.generate import generate
from adrag_app.cli.review import archive, duplicates
from adrag_assets.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from datetime import datetime

    import dagster as dg

    from adrag_assets.tables import Tables


def check_storage(s: Settings) -> None:
    """One clear line and exit 1 when the volume or the tables cannot be reached (a missing
    bucket, refused keys), before any work starts and before Dagster logs a traceback."""
    from adrag_assets.tables import TablesUnavailable
    from adrag_assets.volume import VolumeUnavailable, open_volume

    try:
        open_volume(s.volume_uri).check()
        open_tables(s).check()
    except (VolumeUnavailable, TablesUnavailable) as e:
        fail(str(e))


def open_tables(s: Settings) -> Tables:
    """The tables the Dagster resource opens, without importing Dagster: its storage config
    (``defs/resources.storage_config``) holds only provider defaults, and deltalake reads the
    rest from the provider's variables, as it does here."""
    from adrag_assets.tables import Tables

    return Tables(s.tables_uri)


QUERY = Text(blank="describe the photo you are looking for")


@click.group(cls=Group)
@click.option("-v", "--verbose", is_flag=True, help="Show Dagster's and the libraries' logs.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """adrag: on-brand ads from your own photo library."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # open_clip logs every model build at INFO on the root logger.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as e:
        fail("; ".join(e.problems))
    ctx.obj = {"settings": settings, "verbose": verbose}
    if ctx.invoked_subcommand != "up":
        warn_other_index(settings)


def warn_other_index(s: Settings) -> None:
    """One line on stderr when a running `adrag up` for this home serves another index than
    this shell's ADRAG_MILVUS_URI (see :mod:`adrag_app.cli.serving`)."""
    from adrag_app.cli.serving import other_index_warning

    if line := other_index_warning(s.home, s.milvus_uri):
        click.secho(line, fg="yellow", err=True)


def _milvus_failure(error: Exception) -> str:
    """The one line for a failed Milvus call, with what to do when its data is damaged."""
    from adrag_assets.index.milvus import IndexUnreadable, MilvusUnavailable

    if isinstance(error, MilvusUnavailable):
        return str(error)
    if isinstance(error, IndexUnreadable):
        return f"{error}; `adrag ingest` rebuilds the index from the tables"
    return f"{error}; if the index's data is damaged, `adrag ingest` rebuilds it from the tables"


@main.command()
@click.pass_context
def ingest(ctx: click.Context) -> None:
    """Materialize the whole graph once, in-process: volume -> Delta -> embeddings -> Milvus,
    then the text in the photos."""
    from adrag_assets.dead_runs import recover_dead_runs
    from adrag_assets.defs.embeddings import image_embeddings
    from adrag_assets.defs.index import image_index
    from adrag_assets.defs.photo_text import photo_text
    from adrag_assets.defs.photos import images
    from adrag_assets.embeddings.encoder import load_encoder
    from adrag_assets.embeddings.spec import EncoderError
    from adrag_assets.index.milvus import (
        MilvusError,
        MilvusIndex,
        MilvusUnavailable,
        display_uri,
    )
    from adrag_assets.instance import dagster_instance

    s: Settings = ctx.obj["settings"]
    verbose = ctx.obj["verbose"]
    quiet_milvus_logs(verbose)
    # Before loading a model and embedding: a Milvus that cannot be used would only fail the
    # run at its last step. (Damaged data is not checked here: the run repairs it.)
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    try:
        if index.is_lite_file:
            index.check_not_in_use()
        else:
            index.client.list_collections()
    except MilvusUnavailable as e:
        fail(str(e))
    except MilvusError:
        pass  # it answers; damaged data is the run's to repair
    finally:
        index.close()
    check_storage(s)  # before the model loads: a wrong bucket should not cost that
    try:
        encoder = load_encoder(s.encoder, s.precision, s.device)
    except EncoderError as e:
        fail(str(e))
    click.echo(
        f"volume:  {s.volume}\nencoder: {encoder.label}\nmilvus:  {display_uri(s.milvus_uri)}"
    )
    instance = dagster_instance(s.dagster_home, postgres=bool(s.dagster_pg_url))
    # A run killed earlier would hold the writers' pool slot forever and this run would wait.
    for recovered in recover_dead_runs(instance):
        click.secho(recovered.line, fg="yellow")
    # Photos searchable first; then the text in them (OCR is far slower than the model), and
    # the index again for the words, as the daemon's automation does after an upload.
    _ingest_run(s, instance, [images, image_embeddings, image_index], verbose)
    if s.ocr:
        _ingest_run(s, instance, [photo_text, image_index], verbose)
    _maintain_if_due(s, instance, verbose)


def _ingest_run(s: Settings, instance: dg.DagsterInstance, assets: list, verbose: bool) -> None:
    """Materialize ``assets`` in-process and print what each did; exit on failure."""
    import dagster as dg

    from adrag_assets.dead_runs import process_tags
    from adrag_assets.defs.resources import resources_from_settings

    # Without -v, Dagster's console log (multi-line errors with stack traces) stays off;
    # warnings and the failure are read back from the run's event log, one line each.
    level = "INFO" if verbose else "CRITICAL"
    result = dg.materialize(
        assets,
        resources=resources_from_settings(s),
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
        raise_on_error=False,
        tags={"adrag/source": "cli", **process_tags()},
    )
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items() if k != "sample"}
        keep = (
            "added",
            "updated",
            "deleted",
            "unchanged",
            "rejected",
            "embedded",
            "read",
            "with_text",
            "upserted",
            "dagster/row_count",
            "mode",
            "repaired",
        )
        summary = ", ".join(f"{k.removeprefix('dagster/')}={meta[k]}" for k in keep if k in meta)
        click.echo(f"  {mat.asset_key.to_user_string():17} {summary}")
    failed_checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    ]
    for c in failed_checks:
        click.secho(f"  check failed: {c.asset_key.to_user_string()}.{c.check_name}", fg="yellow")
    warnings, failures = _run_problems(instance, result.run_id)
    if not verbose:
        for line in warnings:
            click.secho(f"warning: {line}", fg="yellow", err=True)
    if not result.success:
        why = failures[0] if failures else "see the Dagster UI"
        fail(f"ingest run {result.run_id} failed: {why} (details: `adrag -v ingest`)")
    click.echo(f"run {result.run_id} succeeded")


def _maintain_if_due(s: Settings, instance: dg.DagsterInstance, verbose: bool) -> None:
    """After a large ingest, the Delta maintenance the daemon's sensor starts after a large
    ingest_job: every chunk was a commit of small files, and the next upload would pay for
    reading them all (bench/scale.py shows it)."""
    from adrag_assets.defs.maintenance import commits_since_maintenance

    threshold = s.maintenance.after_commits
    commits = commits_since_maintenance(instance, open_tables(s))
    due = {name: n for name, n in commits.items() if n >= threshold}
    if not due:
        return
    click.echo(
        f"maintenance: {max(due.values())} commits since the last one (after {threshold}); "
        "compacting and vacuuming the tables"
    )
    result = _run_maintenance(s, instance, verbose)
    if not result.success:
        # The ingest itself succeeded: say so, and how to retry the maintenance alone.
        click.secho(
            f"warning: maintenance run {result.run_id} failed; the ingest stands "
            "(run `adrag maintain` again, or leave it to the nightly schedule)",
            fg="yellow",
            err=True,
        )


def _run_maintenance(s: Settings, instance: dg.DagsterInstance, verbose: bool):
    from adrag_assets.defs.maintenance import maintenance_job
    from adrag_assets.defs.resources import resources_from_settings

    level = "INFO" if verbose else "CRITICAL"
    return maintenance_job.execute_in_process(
        resources=resources_from_settings(s),
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
        raise_on_error=False,
        tags={"adrag/source": "cli"},
    )


def _run_problems(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], list[str]]:
    """The run's warnings (logged by the assets) and step failures, one line each."""
    warnings, failures = [], []
    for entry in instance.all_logs(run_id):
        if entry.is_dagster_event:
            event = entry.dagster_event
            if event.event_type_value == "STEP_FAILURE":
                error = event.step_failure_data.error
                # The step error wraps the asset's own exception: report that one.
                cause = error.cause if error.cause is not None else error
                # Its message starts with the qualified class name: keep the class only.
                head, sep, rest = cause.message.strip().partition(": ")
                text = rest if sep and head.endswith(cause.cls_name or "") else cause.message
                failures.append(one_line(f"{event.step_key}: {cause.cls_name}: {text}"))
        elif entry.level >= logging.WARNING:
            warnings.append(one_line(f"{entry.step_key or 'run'}: {entry.user_message}"))
    return warnings, failures


@main.command()
@click.argument("query", type=QUERY, required=False)
@click.option(
    "--image",
    "image",
    metavar="PATH",
    help="Search by photo: the indexed photos most like this photo file.",
)
@click.option(
    "--like",
    "like",
    metavar="IMAGE_ID",
    help="More like this: the photos most like an indexed photo (itself excluded).",
)
@click.option(
    "--label",
    "labels",
    metavar="KEY=VALUE",
    multiple=True,
    help="Only photos with this label value, e.g. species=dog (repeatable).",
)
@click.option(
    "--taken-after",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Only photos taken on or after this day (EXIF date; undated photos are left out).",
)
@click.option(
    "--taken-before",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Only photos taken before this day (EXIF date; undated photos are left out).",
)
@click.option(
    "-k",
    "--top-k",
    "k",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="How many photos (1 to 100).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def search(
    ctx: click.Context,
    query: str | None,
    image: str | None,
    like: str | None,
    labels: tuple[str, ...],
    taken_after: datetime | None,
    taken_before: datetime | None,
    k: int,
    as_json: bool,
) -> None:
    """Top-K photos for a text QUERY, a photo file (--image) or an indexed photo (--like),
    from the live index. A QUERY with no good match gives no photos (the relevance floor;
    a search by photo always answers)."""
    if sum(x is not None for x in (query, image, like)) != 1:
        raise click.UsageError("give exactly one of QUERY, --image PATH or --like IMAGE_ID")
    from adrag_assets.images.taken import TakenRange

    taken = None
    if taken_after or taken_before:
        try:
            taken = TakenRange(
                taken_after.date() if taken_after else None,
                taken_before.date() if taken_before else None,
            )
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--taken-after/--taken-before") from None
    from adrag_assets.embeddings.spec import RANDOM_PREFIX, RANDOM_WARNING, EncoderError
    from adrag_assets.index.milvus import MilvusError, MilvusIndex
    from adrag_assets.index.search import IndexNotReady, search_live, taken_filter
    from adrag_assets.index.similar import (
        BadPhoto,
        PhotoNotIndexed,
        read_photo,
        similar_to_image,
        similar_to_photo,
    )

    s: Settings = ctx.obj["settings"]
    expr = _label_filter(labels)
    photo = b""
    if image is not None:
        try:
            photo = read_photo(image)  # before loading anything: a bad file fails at once
        except BadPhoto as e:
            fail(f"--image {e}", 2)
    quiet_milvus_logs(ctx.obj["verbose"])
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    try:
        narrowed = taken_filter(expr, taken, s)
        if narrowed is None:
            hits = []  # no photo was taken then
        elif like is not None:
            # The photo's stored vector is the query: no encoder is loaded.
            hits = similar_to_image(index, like.strip(), k, narrowed, s)
        elif image is not None:
            hits = similar_to_photo(index, photo, k, narrowed, s.precision, s)
        else:
            hits, _ = search_live(
                index, query, k, filter=narrowed, precision=s.precision, settings=s
            )
        encoder_id = index.live_encoder_id() or ""
    except (IndexNotReady, EncoderError, PhotoNotIndexed) as e:
        fail(str(e))
    except MilvusError as e:
        fail(_milvus_failure(e))
    if taken is not None and narrowed is None:
        # Not an error either: the list stays valid (empty), the reason goes to stderr.
        click.echo(f"no photo was {taken.describe()}", err=True)
    elif query is not None and not hits:
        # Not an error: the list stays valid (empty), the reason goes to stderr.
        click.echo(f"no good match for {query.strip()!r}: try another description", err=True)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"image_id": h.image_id, "path": h.path, "score": round(h.score, 6)}
                    for h in hits
                ],
                indent=2,
            )
        )
        return
    random = encoder_id.startswith(RANDOM_PREFIX)
    click.echo(f"encoder: {encoder_id}" + (f" ({RANDOM_WARNING})" if random else ""), err=True)
    for rank, h in enumerate(hits, 1):
        click.echo(f"{rank}. {h.score:.4f}  {h.path}  {h.image_id[:12]}")


def _label_filter(labels: tuple[str, ...]) -> str:
    """``--label KEY=VALUE`` options as the Milvus filter the service builds (exact matches,
    quoted and escaped); a usage error for a malformed one."""
    if not labels:
        return ""
    from adrag_app.service.ad_service import milvus_filter

    pairs = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        pairs[key.strip()] = value.strip()
    try:
        return milvus_filter(pairs)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--label") from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Files, table rows, index rows, stale vectors, rejected files, encoder and Milvus URI."""
    from adrag_app.creative.brandkit import kit_in_use
    from adrag_assets.embeddings.progress import read_progress
    from adrag_assets.embeddings.spec import RANDOM_WARNING, EncoderError, EncoderSpec
    from adrag_assets.embeddings.sync import count_stale
    from adrag_assets.images.reviews import archived_ids
    from adrag_assets.index.milvus import (
        PROP_ENCODER_ID,
        PROP_SYNCED_VERSION,
        MilvusError,
        MilvusIndex,
        display_uri,
    )
    from adrag_assets.volume import files as vol
    from adrag_assets.volume import open_volume

    s: Settings = ctx.obj["settings"]
    quiet_milvus_logs(ctx.obj["verbose"])
    try:
        spec = EncoderSpec.parse(s.encoder)
        encoder_id = spec.encoder_id
    except EncoderError as e:
        fail(str(e))
    check_storage(s)
    tables = open_tables(s)
    photos, _ = vol.scan(open_volume(s.volume_uri))
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    try:
        live = index.live_collection()
        props = index.properties(live) if live else {}
        index_rows = index.count(live) if live else 0
    except MilvusError as e:
        fail(_milvus_failure(e))
    out = {
        "files": len(photos),
        "images": tables.count("images"),
        "embeddings": tables.count("image_embeddings", f"encoder_id = '{encoder_id}'"),
        "index_rows": index_rows,
        # Vectors an older decode or model code made: the automation re-embeds them.
        "stale": count_stale(tables, encoder_id),
        "rejected": tables.count("rejected_images"),
        "photo_text": tables.count("photo_text"),  # photos OCR has read
        "archived": len(archived_ids(tables)),  # out of search (the duplicate review)
        "encoder_id": encoder_id,
        "encoder_is_random": spec.is_random,
        "live_collection": live,
        "live_encoder_id": props.get(PROP_ENCODER_ID),
        "synced_delta_version": int(props[PROP_SYNCED_VERSION])
        if PROP_SYNCED_VERSION in props
        else None,
        "milvus_uri": display_uri(s.milvus_uri),
        "volume": str(s.volume),
        "brand_kit": kit_in_use(open_volume(s.volume_uri)),
    }
    # The last embedding job's news, as its run writes it batch by batch (embeddings/progress.py).
    report = read_progress(s.home)
    out["embedding_progress"] = {**asdict(report), "line": report.line()} if report else None
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for key, value in out.items():
        if key == "embedding_progress":
            value = value["line"] if value else None
        click.echo(f"{key:21} {value}")
    if spec.is_random:
        click.secho(f"note: encoder {encoder_id} has {RANDOM_WARNING}", fg="yellow")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per table.")
@click.pass_context
def maintain(ctx: click.Context, as_json: bool) -> None:
    """Compact, vacuum and checkpoint the Delta tables now (maintenance_job, in-process)."""
    from adrag_assets.instance import dagster_instance
    from adrag_assets.tables_maintenance import MB

    s: Settings = ctx.obj["settings"]
    quiet_milvus_logs(ctx.obj["verbose"])
    check_storage(s)
    instance = dagster_instance(s.dagster_home, postgres=bool(s.dagster_pg_url))
    result = _run_maintenance(s, instance, ctx.obj["verbose"])
    if not result.success:
        _, failures = _run_problems(instance, result.run_id)
        why = failures[0] if failures else "see the Dagster UI"
        fail(f"maintenance run {result.run_id} failed: {why} (details: `adrag -v maintain`)")
    done = result.output_for_node("maintain_delta_tables")
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    for m in done:
        b, a = m["before"], m["after"]
        photos = f", photos {a['photo_bytes'] / MB:.1f} MB" if a["photo_bytes"] is not None else ""
        click.echo(
            f"{m['table']:17} v{b['version']}->v{a['version']}  files {b['stored_files']}->"
            f"{a['stored_files']}  {b['total_bytes'] / MB:.1f}->{a['total_bytes'] / MB:.1f} MB"
            f"{photos}"
        )
        for note in m["notes"]:
            click.echo(f"{'':17} {note}")
    click.echo(f"run {result.run_id} succeeded")


@main.command()
@click.option("--dagster-port", default=3000, show_default=True, help="Dagster UI port.")
@click.option("--app-port", default=8501, show_default=True, help="Streamlit app port.")
@click.option(
    "--milvus-port", type=int, default=None, help="Port for the Milvus Lite server it starts."
)
@click.option(
    "--app-address",
    default="127.0.0.1",
    show_default=True,
    help="Where the app listens (0.0.0.0: every interface; needs sign-in). Dagster stays on "
    "127.0.0.1.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve the app beyond this machine without sign-in (anyone reaching it can search "
    "every photo and spend the brand's generation credit).",
)
@click.pass_context
def up(
    ctx: click.Context,
    dagster_port: int,
    app_port: int,
    milvus_port: int | None,
    app_address: str,
    insecure_no_auth: bool,
) -> None:
    """Run Milvus Lite server, Dagster (webserver + daemon) and the app until Ctrl-C."""
    from adrag_app.cli.stack import StackError, check_exposure, run_stack

    try:
        check_exposure(app_address, insecure_no_auth)
        run_stack(ctx.obj["settings"], dagster_port, app_port, milvus_port, app_address)
    except StackError as e:
        fail(str(e))


@main.command("register-encoder")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def register_encoder_cmd(ctx: click.Context, as_json: bool) -> None:
    """Register the configured encoder in the local MLflow registry (pyfunc model)."""
    from dataclasses import asdict

    from adrag_assets.embeddings.mlflow_model import register_encoder
    from adrag_assets.embeddings.spec import EncoderError

    try:
        reg = register_encoder(ctx.obj["settings"])
    except EncoderError as e:
        fail(str(e))
    if as_json:
        out = asdict(reg)
        if reg.alias is None:  # `alias` only for the version of the live encoder
            del out["alias"]
        click.echo(json.dumps(out, indent=2))
        return
    live = f"  (@{reg.alias}: the encoder behind the index)" if reg.alias else ""
    click.echo(f"{reg.model_uri}  encoder {reg.encoder_id}{live}")
    if reg.random_weights:
        click.secho("note: random weights, NOT semantic", fg="yellow")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the checks.")
@click.pass_context
def audit(ctx: click.Context, as_json: bool) -> None:
    """Run the full audit now (every vector, every id of the index; drift is repaired)."""
    from adrag_app.cli.audit import run_audit

    s: Settings = ctx.obj["settings"]
    quiet_milvus_logs(ctx.obj["verbose"])
    check_storage(s)
    run_id, ok, outcomes, failures = run_audit(s, ctx.obj["verbose"])
    if as_json:
        click.echo(json.dumps([o.as_dict() for o in outcomes], indent=2, default=str))
    else:
        for o in outcomes:
            shown = ", ".join(f"{k}={v}" for k, v in o.metadata.items() if k != "examples")
            mark = "passed" if o.passed else click.style("FAILED", fg="red")
            click.echo(f"  {o.asset}.{o.check}: {mark}  {shown}")
    if not ok:
        fail(f"audit run {run_id} failed: {failures[0] if failures else 'see the Dagster UI'}")
    if not all(o.passed for o in outcomes):
        fail(f"audit run {run_id}: {sum(not o.passed for o in outcomes)} check(s) failed")


main.add_command(generate)
main.add_command(chat)
main.add_command(evaluate)
main.add_command(duplicates)
main.add_command(archive)
