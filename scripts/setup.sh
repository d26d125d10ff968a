#!/usr/bin/env bash
# Creates the virtual environment and installs the package with everything the tests, the benchmarks and
# `make run` need. Safe to run again.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test,bench,plot,lab]'
for extra in scripts/setup_*.sh; do
  [ -e "$extra" ] || continue
  VENV="$VENV" bash "$extra"
done
