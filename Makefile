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
export TRANSFORMERS_OFFLINE := 1

SAMPLE := samples/llmrouter_9models_sample.parquet
LAMBDAS ?= 0,3700,7400,14800,37000,74000

.PHONY: install run test clean

# torch first and pinned: anything depending on it would otherwise pull a multi-GB CUDA build
$(BIN)/causal-router: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/causal-router

run: install
	$(BIN)/causal-router simulate $(SAMPLE) --policy previous-router --seed 0 --out $(OUT)/logs
	$(BIN)/causal-router train $(OUT)/logs/train.parquet --val $(OUT)/logs/val.parquet \
		--lambdas $(LAMBDAS) --prices configs/prices/llmrouter_9models.yaml --out $(OUT)/routers
	$(BIN)/causal-router evaluate $(OUT)/routers --table $(OUT)/logs/test.parquet \
		--lambdas $(LAMBDAS) --out $(OUT)/metrics.json --plot $(OUT)/utility.png

test: install
	$(BIN)/pytest -q

clean:
	rm -rf out .cache
