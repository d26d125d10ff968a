#!/usr/bin/env bash
# The whole suite: lint, types, unit and integration tests, then the example notebooks under strict nbval.
set -euo pipefail
VENV=${VENV:-.venv}
BIN="$VENV/bin"
"$BIN/ruff" check lm_notebook tests bench scripts
"$BIN/mypy" --strict lm_notebook
"$BIN/python" -m pytest tests
if compgen -G "notebooks/*.ipynb" >/dev/null; then
  "$BIN/python" -m pytest --nbval notebooks
fi
