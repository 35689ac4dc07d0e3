# prefect-mlops: `make run` and `make test` work on a fresh clone; both install from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
BATCHES := .mlops/batches
PYTEST_ARGS ?=
# pytest workers, each running whole test files (the e2e files share servers per worker): one
# more than the CPUs, since end-to-end tests spend much of their time waiting on servers, workers
# and polls (2 cores: with 3 workers the tests' summed time was 2.8x the wall time, with 2 1.97x)
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
PYTEST := $(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile
GITLAB_CI_LOCAL_VERSION := 4.60.1
# outside the clone, like uv's cache: its native module takes minutes to build, once a machine
GITLAB_CI_LOCAL_DIR ?= $(HOME)/.cache/prefect-mlops/gitlab-ci-local-$(GITLAB_CI_LOCAL_VERSION)
export GITLAB_CI_LOCAL := $(GITLAB_CI_LOCAL_DIR)/node_modules/.bin/gitlab-ci-local
SYNCED := $(VENV)/.synced-$(shell cat uv.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install browser gitlab-ci-local run stop test test-fast screenshots lint bench profile clean

$(UV):
	@echo "installing uv $(UV_VERSION) into .uv (the installer for everything else; usually 5-15 s)"
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

# the stack is about 230 packages, 1.5 GB with xgboost-cpu (the CUDA build is the GPU image's)
$(SYNCED): uv.lock pyproject.toml | $(UV)
	@echo "installing the locked Python stack into $(VENV): Prefect, MLflow, XGBoost (CPU build), \
	Optuna and about 220 more packages, 1.5 GB; usually 30 s with uv's cache warm, 1-3 min cold"
	@start=$$(date +%s); $(UV) sync --frozen --python $(PYTHON) && \
		echo "installed in $$(( $$(date +%s) - start )) s"
	rm -f $(VENV)/.synced-*
	touch $@

install: $(SYNCED)  ## create .venv from the lock file (only when it changed)

# production changes need an audit key: on the laptop's own stack one is made under MLOPS_HOME
run: install  ## the three reference models to production on the embedded synthetic data
	@echo "== make run: the local Prefect and MLflow servers (the first start creates their \
	databases, about 30 s), then fraud, damage and settlement trained, gated and deployed, \
	then batch scoring and monitoring; usually 2-6 min on a quiet 2-core machine"
	$(VENV)/bin/mlops server start
	@echo "make run approves production up front as 'make-run', a declared identity, so it finishes without a human"
	$(VENV)/bin/mlops run fraud damage settlement --as make-run \
		--comment "make run: embedded demo, approved up front"
	@echo; echo "== batch scoring and monitoring: a fresh batch of claims, then a drifted one"
	$(VENV)/bin/mlops generate --rows 20000 --seed 101 --output $(BATCHES)/claims-fresh.parquet
	$(VENV)/bin/mlops generate --rows 20000 --seed 202 --drift 1.0 \
		--output $(BATCHES)/claims-drifted.parquet
	$(VENV)/bin/mlops score fraud --input $(BATCHES)/claims-fresh.parquet \
		--output .mlops/scores/fraud-fresh.parquet
	$(VENV)/bin/mlops monitor fraud --input $(BATCHES)/claims-fresh.parquet
	$(VENV)/bin/mlops score fraud --input $(BATCHES)/claims-drifted.parquet \
		--output .mlops/scores/fraud-drifted.parquet
	@$(VENV)/bin/mlops monitor fraud --input $(BATCHES)/claims-drifted.parquet; code=$$?; \
		if [ $$code -eq 4 ]; then echo "make run: the drifted batch was flagged (exit 4), as it should be"; \
		else echo "make run: the drifted batch was NOT flagged (exit $$code)"; exit 1; fi
	@echo; echo "Prefect UI: http://127.0.0.1:$${MLOPS_PREFECT_PORT:-4200} — MLflow UI: http://127.0.0.1:$${MLOPS_MLFLOW_PORT:-5000} — stop with \`mlops server stop\` or \`make stop\`"

stop:  ## stop the local stack that make run (or mlops server start) left running
	@if [ -x $(VENV)/bin/mlops ]; then $(VENV)/bin/mlops server stop; fi

browser:  ## Debian's chromium for the browser test, installed when missing and apt can
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for tests/e2e/test_ui.py"; \
		(apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null)) || \
		echo "WARNING: chromium could not be installed: the browser test will be SKIPPED"; \
	else echo "WARNING: no chromium and no root apt-get: the browser test will be SKIPPED"; fi

# its native re2 module is built at install (a prebuilt download, else node-gyp): tried twice
gitlab-ci-local:  ## gitlab-ci-local for tests/unit/test_gitlab_ci_sources.py, in ~/.cache (needs npm)
	@if [ -x $(GITLAB_CI_LOCAL) ] && [ "$$($(GITLAB_CI_LOCAL) --version)" = $(GITLAB_CI_LOCAL_VERSION) ]; then :; \
	elif command -v npm >/dev/null; then \
		echo "installing gitlab-ci-local $(GITLAB_CI_LOCAL_VERSION) into $(GITLAB_CI_LOCAL_DIR)"; \
		mkdir -p $(GITLAB_CI_LOCAL_DIR) && cd $(GITLAB_CI_LOCAL_DIR) && \
		{ [ -f package.json ] || echo '{"private": true}' > package.json; } && \
		for try in 1 2; do npm install --no-audit --no-fund --silent \
			gitlab-ci-local@$(GITLAB_CI_LOCAL_VERSION) && break; done || \
		echo "WARNING: gitlab-ci-local could not be installed: the pipeline-per-source test will be SKIPPED"; \
	else echo "WARNING: no npm: the pipeline-per-source test will be SKIPPED"; fi

test: install browser gitlab-ci-local  ## every test, end-to-end included (PYTEST_ARGS: extra pytest options)
	$(PYTEST) $(PYTEST_ARGS)

test-fast: install gitlab-ci-local  ## the quick subset: unit tests and the lighter integration modules (no real servers)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

screenshots: install browser  ## docs/images/*.png: the Prefect UI as the browser tests see it (needs PostgreSQL)
	MLOPS_UI_SCREENSHOTS=docs/images $(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e/test_ui.py \
		tests/e2e/test_prefect_recipe.py -k "approval_in_the_prefect_ui or recipe_deploys or plots_in_chromium"

lint: install  ## ruff, then mypy: zero type errors outside pyproject.toml's ratchet list
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install  ## measured budgets, printed as side-by-side ratios
	$(VENV)/bin/python benchmarks/run.py
	$(VENV)/bin/python benchmarks/scoring.py
	$(VENV)/bin/python benchmarks/tuning.py
	$(VENV)/bin/python benchmarks/tuning_workers.py
	$(VENV)/bin/python benchmarks/fanout.py

clean:
	rm -rf .mlops .pytest_cache .ruff_cache .mypy_cache

PROFILE_MODEL ?= fraud
PROFILE_DIR ?= .mlops/profile
# where one `mlops train` spends its time, with Python's own tools (no extra package): a cProfile
# of the run (`mlops train --force`: the whole flow even when the model is up to date), the
# per-module import times, and the per-stage table of benchmarks/stages.py
profile: install  ## profile one `mlops train $(PROFILE_MODEL) --force` into $(PROFILE_DIR)
	@mkdir -p $(PROFILE_DIR)
	$(VENV)/bin/python -m cProfile -o $(PROFILE_DIR)/train.prof -m mlops.cli train $(PROFILE_MODEL) --force
	$(VENV)/bin/python -c "import pstats; pstats.Stats('$(PROFILE_DIR)/train.prof').sort_stats('cumulative').print_stats(40)" \
		> $(PROFILE_DIR)/train-top.txt
	$(VENV)/bin/python -X importtime -m mlops.cli train $(PROFILE_MODEL) --force 2> $(PROFILE_DIR)/importtime.txt >/dev/null
	$(VENV)/bin/python benchmarks/stages.py $(PROFILE_DIR)/stages.json mlops train $(PROFILE_MODEL) --force >/dev/null
	@$(VENV)/bin/python benchmarks/profile_report.py $(PROFILE_DIR)
