#!/usr/bin/env bash
# The unit tests (tests/ without tests/real and tests/browser) three times, each run beside two busy CPU loops, as on
# a shared machine whose cores are taken: a test that leans on timing fails here. Fails when any run fails.
# Not part of `make test`. Extra arguments go to pytest (e.g. `bash scripts/test_stress.sh tests/testing -x`).
#   STRESS_RUNS=3 STRESS_LOOPS=2 (the defaults) change how many runs, and how many busy loops beside them.
set -uo pipefail
VENV=${VENV:-.venv}
BIN="$VENV/bin"
RUNS=${STRESS_RUNS:-3}
LOOPS=${STRESS_LOOPS:-2}

busy=()
stop_busy() {
  for pid in "${busy[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${busy[@]}"; do
    wait "$pid" 2>/dev/null
  done
  busy=()
}
# the loops end with this script however it ends: on exit and on Ctrl-C here, and each loop also stops by itself once
# this shell is gone (killed with no chance to clean up)
trap stop_busy EXIT
trap 'exit 130' INT TERM
parent=$$
for _ in $(seq "$LOOPS"); do
  ( while kill -0 "$parent" 2>/dev/null; do :; done ) &
  busy+=("$!")
done

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(tests)
fi
failed=()
for run in $(seq "$RUNS"); do
  echo "=== stress run $run of $RUNS, beside $LOOPS busy CPU loops (pids ${busy[*]})"
  if ! "$BIN/python" -m pytest --ignore=tests/real --ignore=tests/browser -p no:cacheprovider -q "${args[@]}"; then
    failed+=("$run")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-stress: run(s) ${failed[*]} of $RUNS failed (their FAILED lines are above)"
  exit 1
fi
echo "test-stress: all $RUNS runs passed beside $LOOPS busy CPU loops"
