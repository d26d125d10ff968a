# One obvious command per job. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup setup-run run test test-stress lint unit notebooks bench mock clean

# what `make run` needs (the package, JupyterLab); `make setup` adds the tests' tools, llama.cpp and Chromium
setup-run: $(RUN_STAMP)
setup: $(TEST_STAMP)

$(RUN_STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh run
	touch $@

$(TEST_STAMP): pyproject.toml scripts/setup.sh $(wildcard scripts/setup_*.sh)
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh test
	touch $@ $(RUN_STAMP)

# with nothing answering on LMSTUDIO_BASE_URL (default :1234), run_lab.py starts the bundled fake server there,
# paced like a local model (`python -m lm_notebook.testing --demo`), for as long as JupyterLab runs
run: setup-run
	$(BIN)/python scripts/run_lab.py

test: setup
	bash scripts/test.sh

# the unit tests three times beside two busy CPU loops (started and always stopped by the script); not part of `test`
test-stress: setup
	bash scripts/test_stress.sh

lint: setup
	$(BIN)/ruff check lm_notebook tests bench scripts
	$(BIN)/mypy --strict lm_notebook

unit: setup
	$(BIN)/python -m pytest tests

notebooks: setup
	$(BIN)/python -m pytest --nbval notebooks

bench: setup
	$(BIN)/python -m bench

mock: setup-run
	$(BIN)/python -m lm_notebook.testing --port 1235

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
