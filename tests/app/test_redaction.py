"""No secret and no token-shaped string typed by a user ends up anywhere adrag writes.

`adrag generate` runs for real (a subprocess) against the fake Replicate with a configured
REPLICATE_API_TOKEN, and its description, segment and headline carry that token and two
other token-shaped strings. Then every file under ADRAG_HOME (the volume with the ad and its
sidecar, the Delta tables, Dagster's storage, the MLflow database) is read byte by byte, and
every file name checked, for any part of them. A marker word typed next to the tokens shows
that the same search does find what those stores keep.
"""

from __future__ import annotations

import json

from adrag_assets.redact import REDACTED, redact, redact_text
from adrag_assets.settings import DEFAULT_REPLICATE_MODEL
from tests.support.cli import run_adrag
from tests.support.data import copy_few_pets
from tests.support.fake_replicate import FakeReplicate
from tests.support.helpers import draw_brand

CONFIGURED = "r8_FakeTokenForTests0123456789abcdefXYZ"  # the REPLICATE_API_TOKEN
PASTED = "r8_PastedIntoTheDescription9876543210zyx"  # token-shaped, configured nowhere
KEY = "sk-proj-PastedOpenAIStyleKey0123456789"  # OpenAI-style, in the segment
# Lower-case cores: the file name slug lower-cases and cuts what it is given.
FRAGMENTS = ("faketokenfortests", "pastedintothedescription", "pastedopenaistylekey")
MARKER = "zebrafinchmarker"


def _leaks(text: str) -> list[str]:
    return [f for f in FRAGMENTS if f in text.lower()]


def test_redact_covers_secrets_token_shapes_and_uri_credentials(monkeypatch):
    monkeypatch.setenv("ADRAG_MILVUS_TOKEN", "root:Milvus-Secret-1")
    text = f"a {PASTED} b {KEY} c root:Milvus-Secret-1 d http://user:pw@host:19530/db"
    assert redact_text(text) == (
        f"a {REDACTED} b {REDACTED} c {REDACTED} d http://***@host:19530/db"
    )
    assert redact({"k": [PASTED, 3], PASTED: None}) == {"k": [REDACTED, 3], REDACTED: None}
    assert redact_text("r8_short and sk-short stay, as do words") == (
        "r8_short and sk-short stay, as do words"
    )


def test_generated_ad_leaves_no_token_anywhere_under_adrag_home(settings, env):
    copy_few_pets(settings.raw_dir)
    draw_brand(settings.volume / "brand" / "bottle.png", (200, 30, 60), "PNG")
    ingest = run_adrag("ingest", env=env)
    assert ingest.returncode == 0, ingest.stderr

    with FakeReplicate(CONFIGURED) as api:
        out = run_adrag(
            "generate",
            f"a beagle on a lawn {MARKER} {PASTED} {CONFIGURED}",
            "--segment",
            f"dog owners {KEY}",
            "--headline",
            f"Fresh {PASTED}",
            "--placement",
            "meta_square",  # one aspect ratio: one model call
            "--json",
            env={
                **env,
                "REPLICATE_API_TOKEN": CONFIGURED,
                "ADRAG_GENERATOR": "replicate",
                "ADRAG_REPLICATE_BASE_URL": api.base_url,
            },
        )
        assert out.returncode == 0, out.stderr
        (create,) = api.creates
    # The token went where it belongs, the Authorization header, and nowhere else.
    assert create.headers["authorization"] == f"Bearer {CONFIGURED}"
    prompt = create.json()["input"]["prompt"]
    assert MARKER in prompt and not _leaks(prompt)
    assert not _leaks(out.stdout + out.stderr)

    (ad,) = json.loads(out.stdout)
    assert ad["model"] == DEFAULT_REPLICATE_MODEL
    sidecar = json.loads((settings.volume / ad["sidecar"]).read_text())
    assert sidecar["description"] == f"a beagle on a lawn {MARKER} {REDACTED} {REDACTED}"
    assert sidecar["segment"] == f"dog owners {REDACTED}"
    assert ad["path"].startswith("ads/") and not _leaks(ad["path"])

    leaks, marked = [], set()
    for path in sorted(settings.home.rglob("*")):
        rel = path.relative_to(settings.home).as_posix()
        leaks += [(rel, f) for f in _leaks(path.name)]
        if path.is_file():
            data = path.read_bytes().lower()
            leaks += [(rel, f) for f in FRAGMENTS if f.encode() in data]
            if MARKER.encode() in data:
                marked.add(rel.split("/")[0])
    assert not leaks
    # The search is not vacuous: the volume (sidecar), Dagster's event log and the MLflow
    # traces all hold the description's plain words, and were read.
    assert {"volume", "dagster", "mlflow"} <= marked, marked
