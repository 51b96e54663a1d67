# Set-up is part of every target: a fresh clone needs only Python >= 3.11 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo
PYTEST_ARGS ?=

.PHONY: test lint format demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# silero-vad's wheel declares torch, which the VAD never imports (it loads the ONNX file the wheel
# ships): install it without dependencies so the Silero tests run everywhere.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps 'silero-vad>=5.1'
	touch $@

# PYTHONWARNINGS: setuptools' editable install prints a banner warning about import shadowing
# (true of every editable install) that would bury the demo's own output.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[offline]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/voicegraph demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
