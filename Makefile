# adrag: the three commands a newcomer needs are `make setup`, `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob
# dg looks for the project's venv; naming it keeps dg from warning that none is active.
DG     := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg

.PHONY: setup serving-venv demo test bench bench-scale lint format dev up clean

setup: $(STAMP) $(AZURITE) serving-venv

# torch/torchvision are pinned to the builds that lie on this machine's disk; a plain
# `torch` would pull a multi-GB download. They go first so nothing else picks another.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]"
	@# Browser tests drive Debian's chromium (Playwright's own browser download is not
	@# reachable here). Installing it needs root; without it those tests are skipped locally.
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && 		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } 		|| echo "note: chromium not installed (needs root); browser tests will be skipped"
	@# Creatives fall back to DejaVu Sans when the brand kit names no font.
	@[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core; } \
		|| echo "note: fonts-dejavu-core not installed (needs root); creatives need a brand kit font"
	@# The Dagster-on-PostgreSQL test starts Debian's postgresql in a temp dir (as root, as the postgres user).
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && 		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } 		|| echo "note: postgresql not installed (needs root); the PostgreSQL test will be skipped"
	touch $@

# The az:// volume test runs Azurite, Microsoft's Azure Blob emulator, from npm (~1 min,
# 360 MB); a target of its own, so a venv made before it gets it too.
$(AZURITE): | $(STAMP)
	@command -v npm >/dev/null \
		&& npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@3.37.0 \
		|| echo "note: Azurite not installed (needs npm); the az:// test will be skipped"

# A venv with only the registered encoder's requirements, where the serving test runs
# `mlflow models serve` as a fresh machine would. Kept under ~/.cache/adrag/serving-venvs by the
# requirements' digest (a new pin builds a new one; otherwise this is a second's check): the
# first build takes ~20 min and ~6 GB here (torch's CUDA wheels), too long for `make test`.
serving-venv: $(STAMP)
	$(BIN)/python -m tests.support.serving_venv

# A fresh ADRAG_HOME, photos under raw/ (ADRAG_DEMO_IMAGES, else a drawn set), ingest, search.
demo: setup
	ADRAG_HOME=$${ADRAG_HOME:-$(CURDIR)/.adrag-demo} $(BIN)/python -m adrag_app.cli.demo

# Four workers, a test file per worker (files share module fixtures), the files that run whole
# stacks first (tests/conftest.py). Four on two cores: most of those files wait on services
# they started (18 min with 4 workers against 27 with 2, on the same loaded machine). A single
# file or test: `.venv/bin/python -m pytest tests/assets/test_sensor.py`.
test: setup
	$(BIN)/python -m pytest -n 4 --dist loadfile --durations=25

bench: setup
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.incremental
	$(BIN)/python -m bench.search_latency
	$(BIN)/python -m bench.creatives
	$(BIN)/python -m bench.camera
	$(BIN)/python -m bench.ray_actors
	$(BIN)/python -m bench.ocr
	@echo '== the chat app: each turn of a scripted AppTest conversation (warm after the first)'
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/app/test_app.py -k whole_conversation

# Libraries of N = 300, 5,000 and 20,000 photos (BENCH_SCALE_ARGS="--large" adds 100,000):
# first ingest, one upload, maintenance, search; ~25 min on 2 cores (not part of `make test`).
# Then hybrid search alone on collections of 20,000 (and 100,000) rows built directly.
bench-scale: setup
	$(BIN)/python -m bench.scale $(BENCH_SCALE_ARGS)
	$(BIN)/python -m bench.hybrid_scale $(filter --large,$(BENCH_SCALE_ARGS))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DG) check defs

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Dagster UI (webserver + daemon) on this workspace, with state under ADRAG_HOME.
dev: setup
	mkdir -p $${ADRAG_HOME:-.adrag}/dagster
	DAGSTER_HOME=$${DAGSTER_HOME:-$$(realpath $${ADRAG_HOME:-.adrag})/dagster} \
		$(DG) dev -p $${DAGSTER_PORT:-3000}

# Milvus Lite server + Dagster webserver/daemon (+ the app) until Ctrl-C; see README.
up: setup
	$(BIN)/adrag up

clean:
	rm -rf .adrag-demo .pytest_cache .ruff_cache
