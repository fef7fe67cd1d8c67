"""image_embeddings on a real local Ray cluster (ADRAG_RAY_ADDRESS): `ray.init` on 2 CPUs, and a
2-node `ray.cluster_utils.Cluster` shared by the module's other tests. Each run starts from a
copy of one home whose photos were ingested and embedded in-process (40, then 8 more): Ray must
give the same ids and vectors, from the change feed and from a full reconcile, and an encoder
actor that dies mid-job must leave no duplicate or missing row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from adrag_assets.defs.embeddings import image_embeddings
from adrag_assets.defs.photos import images
from adrag_assets.defs.resources import RayEmbedResource, resources_from_settings
from adrag_assets.settings import Settings, SettingsError, load_settings
from adrag_assets.tables import Tables
from tests.support import ray_faults
from tests.support.data import REPO, TEST_ENCODER, copy_few_pets

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


def home_settings(home: Path, **more: str) -> Settings:
    return load_settings(
        {
            "ADRAG_HOME": str(home),
            "ADRAG_ENCODER": TEST_ENCODER,
            "ADRAG_PRECISION": "fp32",
            "ADRAG_BATCH_SIZE": "8",
            **more,
        }
    )


def vectors(settings: Settings) -> dict[str, np.ndarray]:
    rows = Tables(settings.tables_dir).read("image_embeddings", ["image_id", "embedding"])
    ids = rows.column("image_id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate rows"
    return dict(zip(ids, np.stack(rows.column("embedding").to_numpy(False)), strict=True))


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def ray_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Ray's temp dir: under pytest's when that is short enough (Ray's Unix sockets live 60
    characters below it, and a socket path has at most 107), else a short one in /tmp. Also
    Ray's default one (RAY_TMPDIR), where a test cluster records its address."""
    base = tmp_path_factory.mktemp("r")
    short = base if len(str(base)) <= 40 else Path(tempfile.mkdtemp(prefix="ar"))
    (short / "ray").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TMPDIR", str(short))
        # Ray's memory monitor kills workers when the whole machine is nearly full, which a
        # loaded test machine (every worker's servers) may be: only the test's fault kills.
        mp.setenv("RAY_memory_monitor_refresh_ms", "0")
        # The fault hook (tests.support.ray_faults) is imported by every worker the cluster
        # starts: they need the checkout on their path, which pytest gives only to itself.
        mp.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        )
        yield short
    shutil.rmtree(short, ignore_errors=True)


MORE = ("boxer",)  # the 8 photos added after the first 40


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, instance) -> tuple[Path, Path, dict]:
    """Homes embedded in-process: with 40 photos (a copy), then with 8 more; the 48 vectors."""
    home = tmp_path_factory.mktemp("base") / "home"
    s = home_settings(home)
    copy_few_pets(s.raw_dir)
    res = resources_from_settings(s)
    assert dg.materialize([images, image_embeddings], resources=res, instance=instance).success
    first = tmp_path_factory.mktemp("first") / "home"
    shutil.copytree(home, first)
    copy_few_pets(s.raw_dir, MORE)
    assert dg.materialize([images, image_embeddings], resources=res, instance=instance).success
    base = vectors(s)
    assert len(base) == 48
    return first, home, base


def copy_without_vectors(embedded: tuple[Path, Path, dict], dest: Path) -> Settings:
    shutil.copytree(embedded[1], dest)
    s = home_settings(dest)
    shutil.rmtree(Path(s.tables_dir) / "image_embeddings")
    return s


def embed_on_ray(s: Settings, instance, ray_resource: RayEmbedResource) -> dict:
    res = {**resources_from_settings(s), "ray": ray_resource}
    result = dg.materialize([image_embeddings], resources=res, instance=instance)
    assert result.success
    (mat,) = result.asset_materializations_for_node("image_embeddings")
    return {k: v.value for k, v in mat.metadata.items()}


def assert_same(got: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(base)
    cos = min(
        float(got[i] @ base[i] / np.linalg.norm(got[i]) / np.linalg.norm(base[i])) for i in base
    )
    assert cos >= 0.9999, cos


@pytest.fixture(scope="module")
def cluster(ray_tmp: Path):
    """Two nodes of one CPU each: the encoder actors land on both."""
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": str(ray_tmp)},
    )
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def test_local_cluster_on_two_cpus_embeds_new_photos_from_the_change_feed(
    embedded, instance, tmp_path, ray_tmp
):
    shutil.copytree(embedded[0], tmp_path / "home")
    s = home_settings(tmp_path / "home", ADRAG_RAY_ADDRESS="local", ADRAG_RAY_MIN_IMAGES="0")
    copy_few_pets(s.raw_dir, MORE)
    assert dg.materialize([images], resources=resources_from_settings(s), instance=instance).success
    from_settings = resources_from_settings(s)["ray"]
    assert (from_settings.address, from_settings.actors, from_settings.min_images) == (
        "local",
        2,
        0,
    )
    meta = embed_on_ray(
        s,
        instance,
        RayEmbedResource(
            address="local",
            actors=2,
            min_images=0,
            ray_init_options={"num_cpus": 2, "include_dashboard": False, "_temp_dir": str(ray_tmp)},
        ),
    )
    assert meta["embedded_on"] == "Ray: 2 encoder actors (1 CPU each)"
    assert (meta["mode"], meta["embedded"]) == ("changes", 8)
    assert not ray.is_initialized()  # dagster-ray disconnected (and `local` stopped its cluster)
    assert_same(vectors(s), embedded[2])


def test_two_node_cluster_with_an_actor_dying_mid_job_gives_the_in_process_rows(
    embedded, instance, tmp_path, cluster
):
    s = copy_without_vectors(embedded, tmp_path / "home")
    marker = tmp_path / "died"
    meta = embed_on_ray(
        s,
        instance,
        RayEmbedResource(
            address=cluster.address,
            actors=2,
            min_images=0,
            ray_init_options={
                "runtime_env": {
                    "worker_process_setup_hook": f"{ray_faults.__name__}.die_once",
                    "env_vars": {ray_faults.MARKER: str(marker)},
                }
            },
        ),
    )
    assert marker.exists()  # an actor did die, after decoding its first batch
    assert meta["embedded_on"] == "Ray: 2 encoder actors (1 CPU each)"
    assert (meta["mode"], meta["embedded"], meta["failed"]) == ("full", 48, 0)
    assert_same(vectors(s), embedded[2])  # no duplicate (vectors() checks), none missing


def test_below_the_threshold_embeds_in_process_without_ray(embedded, instance, tmp_path):
    s = copy_without_vectors(embedded, tmp_path / "home")
    meta = embed_on_ray(s, instance, RayEmbedResource(address="local", min_images=49))
    assert meta["embedded_on"] == "this process"
    assert not ray.is_initialized()
    assert_same(vectors(s), embedded[2])


def test_the_code_location_loads_without_ray_whether_or_not_an_address_is_set(tmp_path):
    """Ray and dagster-ray are imported by a run that embeds on Ray, never by loading defs."""
    code = (
        "import sys\n"
        "from adrag_assets.definitions import defs\n"
        "defs()\n"
        "print(sorted(m for m in ('ray', 'dagster_ray') if m in sys.modules))\n"
    )
    for address in ("", "local"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "ADRAG_HOME": str(tmp_path), "ADRAG_RAY_ADDRESS": address},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            check=True,
        )
        assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


def test_a_bad_ray_address_is_named():
    with pytest.raises(SettingsError) as e:
        load_settings({"ADRAG_RAY_ADDRESS": "http://head:8265", "ADRAG_RAY_ACTORS": "0"})
    assert e.value.problems == [
        "ADRAG_RAY_ADDRESS='http://head:8265': expected local, auto, HOST:PORT or ray://HOST:PORT",
        "ADRAG_RAY_ACTORS='0': expected a number greater than 0",
    ]
