# Every target creates .venv from the project's own files when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := data/digits

.DEFAULT_GOAL := help
.PHONY: help venv demo test postgres lint format ui bench pictures lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create or update .venv (pinned by requirements.lock)

demo: $(STAMP) ## run the main job (a small study) offline on bundled sample data
	$(BIN)/trainer sample-data $(DATA)
	$(BIN)/trainer explore trainer/configs/demo.yaml
	$(BIN)/studies run studies/configs/demo.yaml
	$(BIN)/studies report digits-demo-study
	$(BIN)/studies promote digits-demo-study --model-name digits
	$(BIN)/trainer predict --model models:/digits@champion $(DATA)/7 --out predictions.csv
	@echo "Predictions from models:/digits@champion: predictions.csv"
	@echo "Browse the runs, the study run's report and the registered model: make ui  (MLflow UI on http://127.0.0.1:5000)"
	@echo "Browse the study: $(BIN)/optuna-dashboard mlruns/optuna/journal.log"
	@echo "Pictures of the data (class grids, duplicate pairs, charts): outputs/digits-demo/explore/ and the run 'explore' of experiment digits-demo in the MLflow UI"

test: $(STAMP) postgres ## run the test suite (slow tests included)
	$(BIN)/python -m pytest

postgres: ## install PostgreSQL server binaries if missing (the stack test starts its own cluster)
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { echo "installing PostgreSQL from the OS packages (needed by tests/test_stack.py)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(STAMP) ## MLflow UI on 127.0.0.1 over the embedded store
	@echo "MLflow UI: http://127.0.0.1:5000"
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlruns/mlflow.db

bench: $(STAMP) ## run the benchmarks (quick mode) and rewrite docs/benchmarks.md
	$(BIN)/python -m bench.report_scaling --full
	$(BIN)/python -m bench.tracking_overhead
	$(BIN)/python -m bench.system_metrics
	$(BIN)/python -m bench.cpu_modes --full
	$(BIN)/python -m bench.parallel_trials
	$(BIN)/python -m bench.input_pipeline
	$(BIN)/python -m bench.pruning_economy
	$(BIN)/python -m bench.time_to_best
	$(BIN)/python -m bench.decode_cost
	$(BIN)/python -m bench.explore
	$(BIN)/python -m bench.gpu_pipeline  # skipped without CUDA
	$(BIN)/python -m bench.command_latency
	$(BIN)/python -m bench.docs

pictures: $(STAMP) ## rerun a small demo in a scratch store and redraw the README's docs/images/*.png
	$(BIN)/python docs/pictures.py

lock: $(STAMP) ## rewrite requirements.lock from the current .venv
	@{ echo "# Exact versions tested together (pip freeze of the dev environment). Used as pip constraints."; \
	   echo "# Regenerate with: make lock"; \
	   $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock

clean: ## remove caches and outputs (keeps .venv and mlruns/)
	rm -rf outputs .pytest_cache .mypy_cache .ruff_cache
