#!/usr/bin/env bash
# Run a command several times in a row on a loaded machine: one busy loop per CPU core competes with it
# for the whole time, and the loops stop when the runs end (or fail, or are interrupted).
#
#   bash tests/run-loaded.sh RUNS -- COMMAND...       e.g.  bash tests/run-loaded.sh 3 -- make test
#
# Stops at the first failed run. The busy loops are bounded by `timeout` (LOADED_MAX_S, default 6 h) so
# none outlives a killed script. Exit status: that of the first failed run, 0 when all passed.
set -euo pipefail

runs=${1:?usage: run-loaded.sh RUNS -- COMMAND...}
shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: run-loaded.sh RUNS -- COMMAND..." >&2; exit 2; }
cores=$(nproc)
max_s=${LOADED_MAX_S:-21600}

hogs=()
stop_hogs() {
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${hogs[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$cores"); do
    timeout "$max_s" python3 -c 'while True: pass' &
    hogs+=("$!")
done

for run in $(seq "$runs"); do
    echo "run-loaded: run $run of $runs, $cores busy loop(s) on $cores core(s): $*" >&2
    status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "run-loaded: run $run of $runs FAILED (exit $status)" >&2
        exit "$status"
    fi
done
echo "run-loaded: all $runs runs passed under load" >&2
