# Two commands do all set-up on a fresh machine: `make run` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/sample
export CAUSAL_ROUTER_CACHE_DIR ?= $(CURDIR)/.cache/embeddings
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_LEVEL ?= WARNING
export TRANSFORMERS_OFFLINE := 1

SAMPLE := samples/llmrouter_9models_sample.parquet
LAMBDAS ?= 0,3700,7400,14800,37000,74000

.PHONY: install run data demo test test-fast lint lock bench bench-embed clean up down status e2e

# torch first and pinned: anything depending on it would otherwise pull a multi-GB CUDA build
$(BIN)/causal-router: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,loop]'
	touch $@

install: $(BIN)/causal-router

# The main job: the train flow then the promotion gate on the bundled sample logs (simulated
# from LLMRouter with the previous-router policy), embedded MLflow (SQLite under mlruns/) and
# Prefect (a local temporary server).
run: install data
	$(BIN)/python -m flows.train params.yaml
	$(BIN)/python -m flows.promote params.yaml
	@$(BIN)/dvc status
	@echo ""
	@echo "MLflow UI:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db  (then http://127.0.0.1:5000)"
	@echo "Prefect UI: $(BIN)/prefect server start  (then http://127.0.0.1:4200; set PREFECT_API_URL=http://127.0.0.1:4200/api before make run to record runs there)"
	@echo "Lineage:    $(BIN)/causal-router lineage models:/causal-router-interval@champion"

# dvc.lock as a clean clone's `make run` writes it (the lock records the hashes of the stages' code, so rerun
# this and commit dvc.lock after changing src/, params.yaml or the data): runs the train flow in a fresh clone
# of HEAD with this venv and copies its dvc.lock and metrics summary (artifacts/summary.json, kept in git
# for `dvc metrics diff`) here.
LOCKDIR ?= /tmp/causal-router-lock
lock: install
	rm -rf $(LOCKDIR) && git clone -q . $(LOCKDIR)
	cd $(LOCKDIR) && mkdir -p data && cp samples/llmrouter_logs/* data/ && \
		PYTHONPATH=$(LOCKDIR)/src:$(LOCKDIR) CAUSAL_ROUTER_CACHE_DIR=$(LOCKDIR)/.cache/embeddings \
		$(CURDIR)/$(BIN)/python -m flows.train params.yaml
	cp $(LOCKDIR)/dvc.lock dvc.lock
	mkdir -p artifacts && cp $(LOCKDIR)/artifacts/summary.json artifacts/summary.json
	@git status --porcelain -- dvc.lock artifacts/summary.json

# The bundled observational logs, byte-identical to what data.dvc records.
data:
	@test -f data/train.parquet || (mkdir -p data && cp samples/llmrouter_logs/* data/)

# The library alone (no pipeline): simulate, train and evaluate on the bundled full-feedback sample.
demo: install
	$(BIN)/causal-router simulate $(SAMPLE) --policy previous-router --seed 0 --out $(OUT)/logs
	$(BIN)/causal-router train $(OUT)/logs/train.parquet --val $(OUT)/logs/val.parquet \
		--lambdas $(LAMBDAS) --prices configs/prices/llmrouter_9models.yaml --out $(OUT)/routers
	$(BIN)/causal-router evaluate $(OUT)/routers --table $(OUT)/logs/test.parquet \
		--lambdas $(LAMBDAS) --out $(OUT)/metrics.json --plot $(OUT)/utility.png

test: install lint
	$(BIN)/pytest -q

# everything but the end-to-end runs of the flows and dvc repro (marked slow)
test-fast: install lint
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src flows tests benchmarks

# Benchmarks (need ../shared/data or $CAUSAL_ROUTER_DATA_ROOT, and the 'bench' extra for EconML); each runs as
# python -m benchmarks.<name> from the repository root.
bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.paper_protocol
	$(BIN)/python -m benchmarks.ablations
	$(BIN)/python -m benchmarks.report

bench-embed: install
	$(BIN)/python -m benchmarks.embed_speed

# The production-shaped stack on this machine, natively (infra/README.md): PostgreSQL, MLflow and
# Prefect servers, a worker with the deployments, a Dask cluster, the routing service. Data, PIDs,
# ports and logs under .stack/ (git-ignored); `down` stops exactly those PIDs and keeps the data.
STACK_PY = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY))
up: install data
	$(BIN)/python -m causal_router.stack.stack up
down:
	$(STACK_PY) -m causal_router.stack.stack down
status:
	$(STACK_PY) -m causal_router.stack.stack status
# The whole loop through the servers of `make up`, each step checked through the servers' APIs.
e2e: install data
	$(BIN)/python -m causal_router.stack.e2e

clean:
	rm -rf out .cache artifacts mlruns/mlflow.db mlruns/artifacts
