# Two set-up commands (README): `make run` and `make test`. Both are idempotent: stamps in .venv
# record what was installed, so a second run reinstalls nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TFJS_BUNDLE := web/vendor/tf.min.js
# The WebAssembly backend (the page's default): its bundle and the three binaries it picks from.
WASM_DIST := web/node_modules/@tensorflow/tfjs-backend-wasm/dist
WASM_VENDOR := $(addprefix web/vendor/,tf-backend-wasm.min.js tfjs-backend-wasm.wasm \
	tfjs-backend-wasm-simd.wasm tfjs-backend-wasm-threaded-simd.wasm)

.PHONY: run test web install install-test chromium lint bench experiment clean

run: install web
	$(BIN)/streamlit run dashboard

test: install-test web chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-test: requirements-test.txt requirements-mlflow.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

# TensorFlow.js and its wasm backend come from the pinned npm packages; the copies are git-ignored.
web: $(TFJS_BUNDLE) $(WASM_VENDOR)
$(TFJS_BUNDLE): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p web/vendor
	cp web/node_modules/@tensorflow/tfjs/dist/tf.min.js $(TFJS_BUNDLE)
$(WASM_VENDOR): web/vendor/%: $(TFJS_BUNDLE)
	test -f $(WASM_DIST)/$* || (cd web && npm ci --no-audit --no-fund --loglevel=error)
	cp $(WASM_DIST)/$* $@

# The system Chromium when there is one, otherwise Playwright's own build (needs internet).
chromium: $(VENV)/.installed-test
	@$(BIN)/python -m pipeline.browser --ensure

lint: install-test
	$(BIN)/ruff check .

# The shipped experiment (runs/, web/models/, runs/RESULTS.md); see scripts/experiment.py.
# Runs already in runs/ are resumed; `make experiment ARGS=--from-scratch` trains them anew.
experiment: install web chromium
	$(BIN)/python scripts/experiment.py $(ARGS)

bench: install-test web chromium
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) web/node_modules web/vendor
