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

# the platform (`trackside up`, data in .trackside-data or $TRACKSIDE_DATA_DIR) with
# sample-jobs/adder deployed, in the foreground until Ctrl-C
PORT ?= 7200
run: setup
	$(BIN)/python scripts/make_run.py --port $(PORT)

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

# The platform image (Dockerfile): lifecycle, gateway and dashboard. podman or docker, whichever is
# installed (CONTAINER_ENGINE=... to choose); PYTHON_IMAGE=... builds on another base image;
# IMAGE_BUILD_FLAGS=... passes more flags to the build (e.g. --network host).
IMAGE ?= trackside
IMAGE_TAG ?= dev
PYTHON_IMAGE ?=
IMAGE_BUILD_FLAGS ?=
CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
.PHONY: image
image:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
		echo "make image: neither podman nor docker is installed (install one, or set CONTAINER_ENGINE=/path/to/it)" >&2; exit 2; fi
	@if ! "$(CONTAINER_ENGINE)" info >/dev/null 2>&1; then \
		echo "make image: $(CONTAINER_ENGINE) cannot reach a container engine ('$(CONTAINER_ENGINE) info' fails: is the docker daemon or podman set up?)" >&2; exit 2; fi
	@"$(CONTAINER_ENGINE)" build --file Dockerfile --tag "$(IMAGE):$(IMAGE_TAG)" \
		$(if $(PYTHON_IMAGE),--build-arg "PYTHON_IMAGE=$(PYTHON_IMAGE)") $(IMAGE_BUILD_FLAGS) . \
	|| { echo "make image: the build failed (above). It needs the base image $(or $(PYTHON_IMAGE),named by ARG PYTHON_IMAGE in the Dockerfile) and PyPI; without a reachable registry, build or import a Python base image and pass PYTHON_IMAGE=..." >&2; exit 1; }
	@echo "built $(IMAGE):$(IMAGE_TAG)"
