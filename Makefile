# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-ui test test-unit test-slow snapshots lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	KTT_ALLOW_SYNTHETIC_IDS=1 $(BIN)/ktt demo

# the Dagster UI on the demo data, with the demo's own key file (after `make demo`)
demo-ui: $(STAMP)
	KTT_ALLOW_SYNTHETIC_IDS=1 KTT_KEY_FILE=$${KTT_KEY_FILE:-$$HOME/.config/ktt-backfill/demo-keys.json} $(BIN)/ktt ui

test: $(STAMP)
	KTT_ALLOW_SYNTHETIC_IDS=1 $(BIN)/python -m pytest

# the fast half: one module at a time, no generated world, no Dagster run, no service (about 30 s)
test-unit: $(STAMP)
	KTT_ALLOW_SYNTHETIC_IDS=1 $(BIN)/python -m pytest tests/unit

test-slow: $(STAMP)
	KTT_ALLOW_SYNTHETIC_IDS=1 $(BIN)/python -m pytest -m slow

# rewrite tests/fixtures/definitions.txt after a deliberate change to the Dagster graph (commit it)
snapshots: $(STAMP)
	KTT_UPDATE_SNAPSHOTS=1 KTT_ALLOW_SYNTHETIC_IDS=1 $(BIN)/python -m pytest -q tests/unit/test_definitions_snapshot.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	KTT_ALLOW_SYNTHETIC_IDS=1 $(BIN)/python bench/ingest_yearly_extract.py

clean:
	rm -rf $(VENV) .pytest_cache
