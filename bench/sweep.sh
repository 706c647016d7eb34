#!/usr/bin/env bash
# The pass benchmarks behind docs/performance.md: pass time against N (equal k) and against k
# (equal N), on SQLite and PostgreSQL. Appends one JSON line per configuration to
# bench/results/passes.jsonl. Takes about an hour on the 2-core machine; run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-bench/results/passes.jsonl}
REPEAT=${REPEAT:-3}
for backend in sqlite postgresql; do
    for config in "1000000 10000" "10000000 10000" "100000 10000" "100000 1000" "1000000 1000" "1000000 30000"; do
        set -- $config
        $PY bench/pass_cost.py --backend "$backend" --tokens "$1" --in-window "$2" \
            --repeat "$REPEAT" --json "$OUT"
    done
done
