"""`make bench-scale`: how adrag behaves as the photo library grows (not part of `make test`).

For each N (default 300, 5,000 and 20,000; ``--large`` adds 100,000) it builds a library of
N photos from the pet sample (the originals plus re-encoded copies with a small crop, mirror
and quality change, so every copy is a new image id), then, each in a fresh process whose
peak RSS is read from ``wait4``:

1. the first ingest (``adrag ingest``, OCR off: ``bench.ocr`` gives its cost per photo):
   seconds per stage from the Dagster run, photos/s;
2. one new photo, the way the daemon ingests it: the upload sensor is evaluated and its run
   request (with the change set it hands over) is executed as ``ingest_job``;
3. the Delta tables' data files and bytes before and after maintenance (``adrag maintain``),
   against the bytes of the photos the ``images`` table holds;
4. a relabel: one labels.csv edit that changes the labels of ~1 % of the photos, ingested the
   way the daemon does it (the sensor sees the csv change: a full scan), with the commits,
   bytes written and bytes of files rewritten per table, from the Delta logs;
5. search latency: Milvus top-10 over the live collection vs NumPy brute force over the same
   vectors, and the product's ``search()`` (hybrid, with the text encoding).

Libraries are cached under ``--work`` (default ``$ADRAG_BENCH_DIR`` or ~/.cache/adrag-bench),
so a second run skips building them. Timings on a shared machine are noisy: the verdicts
compare each N with the smallest N measured in the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click
import numpy as np
from tqdm.auto import tqdm

from bench.incremental import variant
from bench.throughput import DEFAULT_IMAGES

BIN = Path(sys.executable).parent
STAGES = ("images", "image_embeddings", "image_index")
NEW_PHOTO = "raw/bench_new/new_upload_{k}.jpg"
# The upload sensor's cursor between ticks, as the daemon keeps it: without it a first look
# cannot tell whether the sidecars changed, and plays safe with a full scan.
CURSOR_FILE = "bench_sensor_cursor.json"


# -- the libraries ---------------------------------------------------------------------------


def _write_copy(job: tuple[str, str, int]) -> None:
    src, dst, k = job
    Path(dst).write_bytes(variant(Path(src), k))


def build_library(n: int, images: Path, root: Path) -> Path:
    """``root/raw`` with N photos: the sample's originals, then copies ``raw/vK/<name>``."""
    done = root / ".complete"
    if done.exists() and done.read_text() == str(n):
        return root
    shutil.rmtree(root, ignore_errors=True)
    raw = root / "raw"
    photos = sorted((images / "images").glob("*.jpg"))
    (raw / "pets").mkdir(parents=True)
    for p in photos[:n]:
        shutil.copy(p, raw / "pets" / p.name)
    # One labels.csv labels every copy too (it matches photos below it by file name).
    shutil.copy(images / "labels.csv", raw / "labels.csv")
    jobs = []
    for i in range(max(0, n - len(photos))):
        k, p = 1 + i // len(photos), photos[i % len(photos)]
        folder = raw / f"v{k}"
        folder.mkdir(exist_ok=True)
        jobs.append((str(p), str(folder / p.name), k))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for _ in tqdm(pool.map(_write_copy, jobs, chunksize=64), total=len(jobs), desc=f"N={n}"):
            pass
    done.write_text(str(n))
    return root


# -- measured child processes ----------------------------------------------------------------


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        # wait4, not Popen.wait: it gives this child's own resource usage (its peak RSS).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{stderr[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout


def stage_seconds(dagster_home: Path, run_id: str | None = None) -> dict[str, float]:
    """Seconds per step of one run (the newest runs when ``run_id`` is None), from the event
    log."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)  # adrag's dagster.yaml refers to it
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # `adrag ingest` runs the photos' OCR (and maintenance) in runs of their own after
        # the ingest's: each step from the newest run that has it.
        ids = [run_id] if run_id else [r.run_id for r in instance.get_runs(limit=5)]
        out: dict[str, float] = {}
        for rid in ids:
            for st in instance.get_run_step_stats(rid):
                if st.start_time and st.step_key not in out:
                    out[st.step_key] = (st.end_time or 0) - st.start_time
    return out


def one_upload_child(prime: bool = False) -> None:
    """In the child: evaluate the upload sensor until it asks for a run, then execute that run
    request as ingest_job, in-process (what the daemon's run worker does, minus the spawn)."""
    import dagster as dg

    from adrag_assets.definitions import defs as load_defs
    from adrag_assets.defs.photos import raw_photos_sensor
    from adrag_assets.defs.resources import resources_from_settings
    from adrag_assets.instance import dagster_instance
    from adrag_assets.settings import load_settings

    s = load_settings()
    instance = dagster_instance(s.dagster_home, postgres=False)
    resources = {k: v for k, v in resources_from_settings(s).items() if k in ("volume", "tables")}
    saved = s.home / CURSOR_FILE
    cursor = saved.read_text() if saved.exists() else None
    request = None
    for _ in range(3):  # a change may wait a tick to settle
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        result = raw_photos_sensor(ctx)
        cursor = ctx.cursor
        if isinstance(result, dg.RunRequest):
            request = result
            break
    saved.write_text(cursor or "")
    if prime:  # the daemon's first look after the ingest: nothing to do
        return
    if request is None:
        raise SystemExit(f"the sensor asked for no run: {result}")
    job = load_defs().get_job_def("ingest_job")
    result = job.execute_in_process(
        run_config=request.run_config or {}, instance=instance, tags=request.tags
    )
    if not result.success:
        raise SystemExit(f"run {result.run_id} failed")
    print(json.dumps({"run_id": result.run_id, "tags": request.tags}))


def search_child(queries: int) -> None:
    """In the child: Milvus top-10 vs NumPy brute force on the live collection's vectors."""
    from adrag_assets.embeddings.encoder import load_encoder
    from adrag_assets.index.milvus import PROP_ENCODER_SPEC, MilvusIndex
    from adrag_assets.index.search import search
    from adrag_assets.settings import load_settings
    from adrag_assets.tables import Tables

    s = load_settings()
    index = MilvusIndex(s.milvus_uri, s.milvus_token, s.index_alias)
    name = index.live_collection()
    eid = load_encoder(index.properties(name)[PROP_ENCODER_SPEC]).encoder_id
    tables = Tables(s.tables_uri)
    ids, vectors = [], []
    for batch in tables.query(
        "image_embeddings",
        f"SELECT image_id, embedding FROM image_embeddings WHERE encoder_id = '{eid}'",
    ):
        ids += batch.column("image_id").to_pylist()
        vectors.append(np.stack(batch.column("embedding").to_numpy(zero_copy_only=False)))
    matrix = np.concatenate(vectors).astype(np.float32)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(ids), size=min(queries, len(ids)), replace=False)

    def timed(fn) -> list[float]:
        out = []
        for i in picks:
            t = time.perf_counter()
            fn(matrix[i])
            out.append((time.perf_counter() - t) * 1000)
        return out

    milvus = timed(lambda q: index.search_dense(name, q.tolist(), 10))
    numpy = timed(lambda q: np.argpartition(-(matrix @ q), 10)[:10])
    words = ["a dog on a lawn", "a sleepy cat", "a beagle", "a persian cat indoors"]
    search(index, "warm-up", k=10)  # the first call loads the encoder
    product = []
    for i in range(len(picks)):
        t = time.perf_counter()
        search(index, words[i % len(words)], k=10)
        product.append((time.perf_counter() - t) * 1000)
    pct = {}
    for label, ms in (("milvus", milvus), ("numpy", numpy), ("search", product)):
        pct[f"{label}_p50_ms"] = float(np.percentile(ms, 50))
        pct[f"{label}_p95_ms"] = float(np.percentile(ms, 95))
    print(json.dumps({"vectors": len(ids), **pct}))


# -- tables on disk --------------------------------------------------------------------------


def table_sizes(tables_root: Path) -> dict[str, tuple[int, int]]:
    """{table: (data files, bytes)} as they lie on disk (old versions' files included)."""
    out = {}
    for table in sorted(p for p in tables_root.iterdir() if p.is_dir()):
        files = [f for f in table.rglob("*.parquet") if "_delta_log" not in f.parts]
        out[table.name] = (len(files), sum(f.stat().st_size for f in files))
    return out


def commits_since(table: Path, version: int) -> dict[str, int]:
    """Commits after ``version`` of a local Delta table, the bytes of the files they added
    and of the files they removed (rewritten: read, then written again)."""
    out = {"commits": 0, "bytes_added": 0, "bytes_removed": 0}
    for entry in sorted((table / "_delta_log").glob("*.json")):
        if int(entry.stem) <= version:
            continue
        out["commits"] += 1
        for line in entry.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            out["bytes_added"] += int(action.get("add", {}).get("size", 0) or 0)
            out["bytes_removed"] += int(action.get("remove", {}).get("size", 0) or 0)
    return out


def table_version(table: Path) -> int:
    return max((int(e.stem) for e in (table / "_delta_log").glob("*.json")), default=-1)


RELABELLED = 0.01  # share of the sample's labels.csv rows changed by the relabel


def relabel(library: Path, env: dict[str, str], row: dict) -> None:
    """Change the breed in ~1 % of labels.csv's rows (each labels that photo and its copies),
    ingest it as the daemon would, and record what each table committed."""
    csv = library / "raw" / "labels.csv"
    original = csv.read_text()
    lines = original.splitlines()
    step = max(1, round(1 / RELABELLED))
    edited = [
        line if k == 0 or k % step else line.replace(",", ",relabelled_", 1)
        for k, line in enumerate(lines)
    ]
    tables_root = Path(env["ADRAG_HOME"]) / "tables"
    names = ("images", "photo_labels", "image_embeddings")
    before = {t: table_version(tables_root / t) for t in names if (tables_root / t).exists()}
    try:
        csv.write_text("\n".join(edited) + "\n")
        past = time.time() - 120
        os.utime(csv, (past, past))
        _, rss, out = run_child([sys.executable, "-m", "bench.scale", "_upload"], env)
    finally:
        csv.write_text(original)
    done = json.loads(out.strip().splitlines()[-1])
    row["relabel_rows"] = sum(1 for k in range(1, len(lines)) if k % step == 0)
    row["relabel_scope"] = done["tags"].get("adrag/scope", "?")
    row["relabel_rss_mb"] = rss
    steps = stage_seconds(Path(env["DAGSTER_HOME"]), done["run_id"])
    for st in STAGES:
        row[f"relabel_{st}_s"] = steps.get(st, float("nan"))
    for t, v in before.items():
        got = commits_since(tables_root / t, v)
        row[f"relabel_{t}_commits"] = got["commits"]
        row[f"relabel_{t}_mb_added"] = got["bytes_added"] / 1e6
        row[f"relabel_{t}_mb_removed"] = got["bytes_removed"] / 1e6


def photo_bytes(tables_root: Path) -> int:
    from adrag_assets.tables import Tables

    t = Tables(tables_root)
    return int(sum(t.read("images", ["size"]).column("size").to_pylist()))


# -- the driver ------------------------------------------------------------------------------


def upload_one(library: Path, images: Path, env: dict[str, str], k: int, row: dict, key: str):
    """One new photo (its mtime in the past, so it counts as a finished upload), ingested the
    way the daemon does it; its stage seconds and peak RSS go into ``row`` under ``key``."""
    new = library / NEW_PHOTO.format(k=k)
    new.parent.mkdir(exist_ok=True)
    photos = sorted((images / "images").glob("*.jpg"))
    new.write_bytes(variant(photos[7 + k], 99_991 + k))
    past = time.time() - 120
    os.utime(new, (past, past))
    _, rss, out = run_child([sys.executable, "-m", "bench.scale", "_upload"], env)
    done = json.loads(out.strip().splitlines()[-1])
    row[f"{key}_scope"] = done["tags"].get("adrag/scope", "?")
    row[f"{key}_rss_mb"] = rss
    steps = stage_seconds(Path(env["DAGSTER_HOME"]), done["run_id"])
    for st in STAGES:
        row[f"{key}_{st}_s"] = steps.get(st, float("nan"))


def measure(n: int, images: Path, work: Path, encoder: str, queries: int) -> dict:
    library = build_library(n, images, work / "libs" / str(n))
    home = work / "homes" / str(n)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(library / Path(NEW_PHOTO).parent, ignore_errors=True)
    home.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ADRAG_", "DAGSTER_"))},
        "ADRAG_HOME": str(home),
        "ADRAG_VOLUME": str(library),
        "ADRAG_ENCODER": encoder,
        # OCR costs ~350 ms a photo on these 2 cores (bench.ocr measures it): at 100,000
        # photos that is hours, and it runs after the photos are searchable anyway.
        "ADRAG_OCR": "off",
        "DAGSTER_HOME": str(home / "dagster"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    row: dict = {"N": n}
    try:
        # The ingest alone (its own maintenance held back, to see the tables before it).
        held = {**env, "ADRAG_MAINTENANCE_AFTER_COMMITS": str(10**9)}
        secs, rss, _ = run_child([str(BIN / "adrag"), "ingest"], held)
        steps = stage_seconds(home / "dagster")
        row["ingest_s"] = secs
        row["ingest_photos_per_s"] = n / secs
        row["ingest_rss_mb"] = rss
        for st in STAGES:
            row[f"ingest_{st}_s"] = steps.get(st, float("nan"))

        # The daemon's first tick after the ingest (nothing to do), then an upload into the
        # tables as the ingest left them: one commit of small files per chunk of photos.
        run_child([sys.executable, "-m", "bench.scale", "_upload", "--prime"], env)
        upload_one(library, images, env, 0, row, "raw_upload")

        tables_root = home / "tables"
        row["photo_mb"] = photo_bytes(tables_root) / 1e6
        before = table_sizes(tables_root)
        row["maintain_s"], _, _ = run_child([str(BIN / "adrag"), "maintain"], env)
        after = table_sizes(tables_root)
        for t in before:
            row[f"{t}_files_before"], b = before[t]
            row[f"{t}_mb_before"] = b / 1e6
            row[f"{t}_files_after"], a = after.get(t, (0, 0))
            row[f"{t}_mb_after"] = a / 1e6

        # Uploads into maintained tables: what `adrag ingest` and the daemon leave after a
        # large ingest (both run maintenance then), so the library's steady state. Sub-second
        # steps are noisy: the median of three uploads, one after the other.
        runs: list[dict] = []
        for k in (1, 2, 3):
            runs.append({})
            upload_one(library, images, env, k, runs[-1], "upload")
        for key in runs[0]:
            values = [r[key] for r in runs]
            row[key] = float(np.median(values)) if isinstance(values[0], float) else values[0]
        try:
            relabel(library, env, row)
        except RuntimeError as e:  # a failed child: the other figures still stand
            row["relabel_error"] = str(e)[-500:]
            print(f"relabel failed: {row['relabel_error']}", flush=True)
    finally:
        shutil.rmtree(library / Path(NEW_PHOTO).parent, ignore_errors=True)

    _, _, out = run_child([sys.executable, "-m", "bench.scale", "_search", str(queries)], env)
    row.update(json.loads(out.strip().splitlines()[-1]))
    return row


def report(rows: list[dict]) -> None:
    def line(label: str, key: str, fmt: str = "{:>10.2f}") -> None:
        print(f"{label:<40}" + "".join(fmt.format(r.get(key, float("nan"))) for r in rows))

    print("\n" + f"{'N photos':<40}" + "".join(f"{r['N']:>10,}" for r in rows))
    print("first ingest")
    line("  wall seconds", "ingest_s", "{:>10.1f}")
    line("  photos / s", "ingest_photos_per_s", "{:>10.1f}")
    for st in STAGES:
        line(f"  {st} s", f"ingest_{st}_s", "{:>10.1f}")
    line("  peak RSS MB", "ingest_rss_mb", "{:>10.0f}")
    for key, label in (
        ("upload", "one new photo, maintained tables (steady state)"),
        ("raw_upload", "one new photo, right after the ingest (before maintenance)"),
    ):
        scopes = "/".join(str(r.get(f"{key}_scope")) for r in rows)
        print(f"{label}; scope {scopes}")
        for st in STAGES:
            line(f"  {st} s", f"{key}_{st}_s")
        line("  peak RSS MB", f"{key}_rss_mb", "{:>10.0f}")
    print(
        "relabel: ~1 % of the photos get a new breed in labels.csv; scope "
        + "/".join(str(r.get("relabel_scope")) for r in rows)
    )
    for st in STAGES:
        line(f"  {st} s", f"relabel_{st}_s")
    for t in ("images", "photo_labels", "image_embeddings"):
        line(f"  {t} commits", f"relabel_{t}_commits", "{:>10.0f}")
        line(f"  {t} MB written", f"relabel_{t}_mb_added", "{:>10.3f}")
        line(f"  {t} MB rewritten", f"relabel_{t}_mb_removed", "{:>10.3f}")
    print("tables (data files / MB on disk, before -> after maintenance)")
    line("  adrag maintain seconds", "maintain_s", "{:>10.1f}")
    line("  photos held by images, MB", "photo_mb", "{:>10.1f}")
    for t in ("images", "volume_files", "rejected_images", "image_embeddings"):
        line(f"  {t} files before", f"{t}_files_before", "{:>10.0f}")
        line(f"  {t} files after", f"{t}_files_after", "{:>10.0f}")
        line(f"  {t} MB before", f"{t}_mb_before", "{:>10.1f}")
        line(f"  {t} MB after", f"{t}_mb_after", "{:>10.1f}")
    print("search, top-10 (ms)")
    for key in ("milvus", "numpy", "search"):
        line(f"  {key} p50", f"{key}_p50_ms")
        line(f"  {key} p95", f"{key}_p95_ms")

    base = rows[0]
    print(f"\nratios against N={base['N']:,} (same run)")
    for r in rows[1:]:
        limit = 1.5 if r["N"] <= 5_000 else 2.0
        worst = max(r[f"upload_{st}_s"] / max(base[f"upload_{st}_s"], 1e-3) for st in STAGES)
        print(
            f"  N={r['N']:,}: one-photo stage time, worst stage {worst:.2f}x (target <= {limit}x); "
            f"one-photo peak RSS {r['upload_rss_mb'] / base['upload_rss_mb']:.2f}x "
            f"(target <= 1.2x at 20,000); first-ingest peak RSS "
            f"{r['ingest_rss_mb'] / base['ingest_rss_mb']:.2f}x (target <= 1.3x at 20,000)"
        )
    for r in rows:
        ratio = r["images_mb_after"] / r["photo_mb"] if r["photo_mb"] else float("nan")
        print(f"  N={r['N']:,}: images table after maintenance = {ratio:.2f}x its photos' bytes")


@click.group(invoke_without_command=True)
@click.option("--sizes", default="300,5000,20000", show_default=True, help="Library sizes.")
@click.option("--large", is_flag=True, help="Also N=100,000 (hours on 2 cores).")
@click.option("--encoder", default="random:adrag-tiny", show_default=True)
@click.option("--queries", default=50, show_default=True, help="Search queries per N.")
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("ADRAG_BENCH_DIR") or Path.home() / ".cache" / "adrag-bench",
    help="Where libraries are cached and runs keep their state.",
)
@click.pass_context
def main(ctx: click.Context, sizes: str, large: bool, encoder: str, queries: int, work: Path):
    if ctx.invoked_subcommand:
        return
    images = Path(os.environ.get("ADRAG_BENCH_IMAGES") or DEFAULT_IMAGES)
    ns = [int(x) for x in sizes.split(",")] + ([100_000] if large else [])
    print(f"bench-scale: N = {ns}, encoder {encoder} (random weights: speed is real, ranks not)")
    rows = []
    for n in ns:
        print(f"\n== N = {n:,}", flush=True)
        rows.append(measure(n, images, work, encoder, queries))
        print(json.dumps(rows[-1]), flush=True)
    report(rows)


@main.command("_upload", hidden=True)
@click.option("--prime", is_flag=True, help="Only look once and keep the cursor.")
def _upload(prime: bool) -> None:
    one_upload_child(prime)


@main.command("_search", hidden=True)
@click.argument("queries", type=int)
def _search(queries: int) -> None:
    search_child(queries)


if __name__ == "__main__":
    main()
