#!/usr/bin/env bash
# make bench: runs the benchmarks (standard shapes, lookahead, kernels) and rewrites
# docs/PERFORMANCE.md; BENCH_QUICK=1 skips the large shapes, BENCH_REPS sets the repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/perf_report.py
