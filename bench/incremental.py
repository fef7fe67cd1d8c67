"""`make bench`, part 2: how fast one upload becomes searchable, and what it costs.

1. Upload-to-searchable latency through the real stack (`adrag up`: Milvus Lite server,
   Dagster webserver + daemon, the upload sensor): several single-photo uploads into an
   index of the pet sample, each broken into sensor wait, run start, embed, index and the
   rest (until `adrag search` returns it).
2. The work one new photo causes in an index of N photos, N = the sample and about ten
   times it (re-encoded copies with small changes): files read, images embedded, rows
   written, seconds per step. It should not grow with N, except for the stat of each file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from adrag_app.cli.stack import free_port
from adrag_assets.embeddings.encoder import load_encoder
from adrag_assets.embeddings.sync import sync_embeddings
from adrag_assets.images.sync import sync_images
from adrag_assets.index.milvus import MilvusIndex
from adrag_assets.index.sync import activate, sync_index
from adrag_assets.tables import Tables
from adrag_assets.volume import open_volume
from bench.throughput import DEFAULT_IMAGES

BIN = Path(sys.executable).parent


def variant(src: Path, i: int) -> bytes:
    """The same photo with a small change (crop, mirror, quality): new bytes, new image_id."""
    im = Image.open(src).convert("RGB")
    w, h = im.size
    im = im.crop((i % 5, i % 3, w - (i % 4), h - (i % 2)))
    if i % 2:
        im = ImageOps.mirror(im)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=70 + i % 25)
    return buf.getvalue()


def one_new_photo(n_copies: int, photos: list[Path], encoder_spec: str, work: Path) -> dict:
    home = work / f"scale-{n_copies}"
    raw = home / "volume" / "raw"
    raw.mkdir(parents=True)
    for k in range(n_copies):
        for p in photos:
            target = raw / f"v{k}" / p.name
            target.parent.mkdir(exist_ok=True)
            if k == 0:
                shutil.copy(p, target)
            else:
                target.write_bytes(variant(p, k))
    tables, index = Tables(home / "tables"), MilvusIndex(str(home / "milvus.db"))
    enc = load_encoder(encoder_spec, "auto")

    def run() -> dict:
        out = {}
        t0 = time.perf_counter()
        s_img = sync_images(open_volume(home / "volume"), tables)
        t1 = time.perf_counter()
        s_emb = sync_embeddings(tables, enc)
        t2 = time.perf_counter()
        s_idx = sync_index(tables, index, enc.encoder_id, encoder_spec, enc.dim)
        activate(index, s_idx.collection)
        t3 = time.perf_counter()
        out.update(
            files=s_img.files,
            files_read=s_img.files_read,
            embedded=s_emb.embedded,
            delta_rows=s_img.added
            + s_img.updated
            + s_img.deleted
            + s_emb.embedded
            + s_emb.updated
            + s_emb.deleted,
            index_rows=s_idx.upserted + s_idx.deleted,
            mode=s_idx.mode,
            t_images=t1 - t0,
            t_embed=t2 - t1,
            t_index=t3 - t2,
            total=t3 - t0,
        )
        return out

    run()  # the initial ingest of N photos, not measured
    (raw / "new.jpg").write_bytes(variant(photos[0], 997))
    result = run()
    index.close()
    return result


def upload_latency(images: Path, spec: str, uploads: int, work: Path) -> list[dict]:
    home = work / "stack"
    raw = home / "volume" / "raw"
    shutil.copytree(images / "images", raw / "pets")
    shutil.copy(images / "labels.csv", raw / "labels.csv")
    interval = os.environ.get("ADRAG_SENSOR_INTERVAL", "5")
    env = {
        **os.environ,
        "ADRAG_HOME": str(home),
        "ADRAG_ENCODER": spec,
        "ADRAG_SENSOR_INTERVAL": interval,
        "DAGSTER_HOME": str(home / "dagster"),
        "ADRAG_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
    }
    env.pop("ADRAG_VOLUME", None)
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "up.out").open("w")
    proc = subprocess.Popen(
        [
            str(BIN / "adrag"),
            "up",
            "--dagster-port",
            str(free_port()),
            "--app-port",
            str(free_port()),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def status() -> dict:
        out = subprocess.run(
            [str(BIN / "adrag"), "status", "--json"], env=env, capture_output=True, text=True
        )
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def searchable(path: str) -> bool:
        # Asked of the live collection the way a running app sees it (one client kept open),
        # by path rather than by rank: a re-encoded copy may rank anywhere, or give way to
        # its original as a near duplicate, and still be searchable.
        try:
            hits = live.client.query(
                live.alias, filter=f'path == "{path}"', output_fields=["image_id"], limit=1
            )
        except Exception:  # the alias or collection is being switched or is not there yet
            return False
        return bool(hits)

    results = []
    try:
        deadline = time.time() + 600
        while status().get("index_rows") != 296:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the stack did not index the sample; see {home}/logs")
            time.sleep(2)
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        import dagster as dg

        live = MilvusIndex(env["ADRAG_MILVUS_URI"])

        instance = dg.DagsterInstance.get()
        photos = sorted((images / "images").glob("*.jpg"))
        for i in range(uploads):
            known = {r.run_id for r in instance.get_runs()}
            name = f"raw/upload_{i}.jpg"
            t_upload = time.time()
            (home / "volume" / name).write_bytes(variant(photos[i * 37 % len(photos)], 500 + i))
            while not searchable(name):
                if time.time() - t_upload > 300:
                    raise RuntimeError(f"upload {i} not searchable after 300 s")
                time.sleep(0.2)
            t_found = time.time()
            new_runs = [r for r in instance.get_runs() if r.run_id not in known]
            run = min(
                new_runs,
                key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp.timestamp(),
            )
            rec = instance.get_run_record_by_id(run.run_id)
            steps = {}
            for e in instance.all_logs(run.run_id):
                if e.dagster_event and e.dagster_event.event_type_value in (
                    "STEP_START",
                    "STEP_SUCCESS",
                ):
                    steps.setdefault(e.dagster_event.step_key, {})[
                        e.dagster_event.event_type_value
                    ] = e.timestamp
            created = rec.create_timestamp.timestamp()
            first_step = min(s["STEP_START"] for s in steps.values())
            emb = steps["image_embeddings"]
            idx = steps["image_index"]
            results.append(
                {
                    "total": t_found - t_upload,
                    "sensor_wait": created - t_upload,
                    "run_start": first_step - created,
                    "images": steps["images"]["STEP_SUCCESS"] - steps["images"]["STEP_START"],
                    "embed": emb["STEP_SUCCESS"] - emb["STEP_START"],
                    "index": idx["STEP_SUCCESS"] - idx["STEP_START"],
                    "search_seen": t_found - idx["STEP_SUCCESS"],
                }
            )
            print(f"  upload {i}: searchable after {results[-1]['total']:.1f} s", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return results


def main() -> None:
    images = Path(os.environ.get("ADRAG_BENCH_IMAGES") or DEFAULT_IMAGES)
    spec = os.environ.get("ADRAG_BENCH_ENCODER") or "random:ViT-B-32"
    scale_spec = os.environ.get("ADRAG_BENCH_SCALE_ENCODER") or "random:adrag-tiny"
    uploads = int(os.environ.get("ADRAG_BENCH_UPLOADS") or 5)
    photos = sorted((images / "images").glob("*.jpg"))
    with tempfile.TemporaryDirectory(prefix="adrag-bench2-") as tmp:
        work = Path(tmp)
        print(
            f"\nupload-to-searchable: {uploads} uploads into the {len(photos)}-photo index, "
            f"encoder {spec} (random weights), sensor interval "
            f"{os.environ.get('ADRAG_SENSOR_INTERVAL', '5')} s"
        )
        lat = upload_latency(images, spec, uploads, work)
        keys = ["total", "sensor_wait", "run_start", "images", "embed", "index", "search_seen"]
        print(f"{'seconds':<14}" + "".join(f"{k:>13}" for k in keys))
        for label, fn in (("median", np.median), ("max", np.max)):
            print(f"{label:<14}" + "".join(f"{fn([r[k] for r in lat]):>13.2f}" for k in keys))

        print(f"\none new photo into an index of N photos (encoder {scale_spec}, in-process)")
        rows = [(n, one_new_photo(n, photos, scale_spec, work)) for n in (1, 10)]
        keys = [
            "files",
            "files_read",
            "embedded",
            "delta_rows",
            "index_rows",
            "t_images",
            "t_embed",
            "t_index",
            "total",
        ]
        print(f"{'N':<6}" + "".join(f"{k:>11}" for k in keys))
        for _, r in rows:
            print(
                f"{r['files'] - 1:<6}"
                + "".join(
                    f"{r[k]:>11.3f}" if isinstance(r[k], float) else f"{r[k]:>11}" for k in keys
                )
            )
        base, big = rows[0][1], rows[1][1]
        n_small, n_big = base["files"] - 1, big["files"] - 1
        print(
            f"time for one photo at N={n_big} vs N={n_small}: "
            f"{big['total'] / base['total']:.2f}x (N grew {n_big / n_small:.1f}x)"
        )


if __name__ == "__main__":
    main()
