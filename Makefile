# Every target bootstraps itself from Python >= 3.11, git and make: uv is installed into
# .tools/ with the standard library's venv + pip, then uv builds .venv from uv.lock.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_COMPILE_BYTECODE := 1

.PHONY: setup run test lint bench clean

setup: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: $(UV) pyproject.toml wrappers/python3/pyproject.toml
	$(UV) sync --python $(PYTHON) --all-groups
	touch $@

PORT ?= 7000
run: setup
	@echo "Serving sample-jobs/adder on http://127.0.0.1:$(PORT) (Ctrl-C stops it). Try:"
	@echo "  curl -X POST http://127.0.0.1:$(PORT)/api/v1/perform -H 'Content-Type: application/json' -d '{\"numbers\": [40, 2]}'"
	@echo "  Swagger UI: http://127.0.0.1:$(PORT)/docs    metrics: http://127.0.0.1:$(PORT)/metrics"
	$(BIN)/python -m trackside_wrapper run sample-jobs/adder --port $(PORT)

# the suite mostly waits on subprocesses, so a few workers beat the core count
PYTEST_WORKERS ?= 3
test: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy wrappers/python3/trackside_wrapper trackside benchmarks tests

bench: setup
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache
