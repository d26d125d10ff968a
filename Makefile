# One obvious command per job. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint typecheck unit notebooks bench mock clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh $(wildcard scripts/setup_*.sh)
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $@

run: setup
	$(BIN)/python scripts/run_lab.py

test: setup
	bash scripts/test.sh

lint: setup
	$(BIN)/ruff check lm_notebook tests bench scripts
	$(BIN)/mypy --strict lm_notebook

unit: setup
	$(BIN)/python -m pytest tests

notebooks: setup
	$(BIN)/python -m pytest --nbval notebooks

bench: setup
	$(BIN)/python -m bench

mock: setup
	$(BIN)/python -m lm_notebook.testing --port 1235

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
