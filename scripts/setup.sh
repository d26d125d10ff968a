#!/usr/bin/env bash
# Creates the virtual environment and installs the package. Safe to run again.
#   scripts/setup.sh run   what `make run` needs: the package, JupyterLab, matplotlib
#   scripts/setup.sh test  everything the tests and benchmarks need as well: test tools, the real-model tier
#                          (llama.cpp's server and two small models, scripts/setup_real.sh) and Chromium for the
#                          browser test (scripts/setup_browser.sh)
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
what=${1:-test}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
case "$what" in
  run)
    "$VENV/bin/python" -m pip install --quiet -e '.[lab,plot]'
    ;;
  test)
    "$VENV/bin/python" -m pip install --quiet -e '.[test,bench,plot,lab]'
    for extra in scripts/setup_*.sh; do
      [ -e "$extra" ] || continue
      VENV="$VENV" bash "$extra"
    done
    ;;
  *)
    echo "usage: scripts/setup.sh run|test" >&2
    exit 2
    ;;
esac
