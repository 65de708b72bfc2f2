# The two commands of README.md:
#   make demo   set up .venv and run the main job (embedded receiver, SQLite)
#   make test   set up .venv and run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUF_VERSION := 1.75.0

.PHONY: demo test setup proto lint-proto lint typecheck bench clean js-deps upstream stack

$(BIN)/vfo-otel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/vfo-otel

demo: setup
	$(BIN)/vfo-otel demo

test: setup lint-proto js-deps
	$(BIN)/python -m pytest -q

# The OpenTelemetry JS SDK exporters that tests/receiver/test_js_sdk.py drives (pinned by the lockfile).
js-deps: tests/js/node_modules/.package-lock.json

tests/js/node_modules/.package-lock.json: tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
# Build the upstream Go programs the tests and `make stack` run (vfo-otelcol via ocb, Prometheus 3, the Go
# SDK client) into ${XDG_CACHE_HOME:-~/.cache}/vfo-otel/upstream/, keyed by a hash of their inputs: a
# second run builds nothing. Needs Go (>= 1.26; /usr/local/go/bin is looked in too). docs/deploy.md.
upstream:
	bash scripts/build_upstream.sh

# collector + Prometheus + receiver as local processes from the cached builds (no Docker); Ctrl-C stops.
stack: setup upstream
	$(BIN)/python scripts/stack.py

# Regenerate vfo_otel/_gen from proto/ (tests/test_generated.py fails when stale).
proto: setup
	$(BIN)/python scripts/gen_proto.py

# buf lint with the repo's buf.yaml; google/api protos come from googleapis-common-protos.
lint-proto: setup
	$(BIN)/python scripts/gen_proto.py --deps build/proto-deps
	npx --yes @bufbuild/buf@$(BUF_VERSION) lint

lint: setup
	$(BIN)/ruff check vfo_otel tests bench scripts
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules
