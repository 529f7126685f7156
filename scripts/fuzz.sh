#!/usr/bin/env bash
# make fuzz: runs every libFuzzer harness for a short time (seconds each, default 20) starting
# from its seed corpus. New inputs go to a scratch folder, never into the checked-in corpus;
# crashes are written to build/fuzz/crashes/.
set -euo pipefail
dir=${1:-build/fuzz}
secs=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir/crashes"
status=0
for bin in "$dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  work=$(mktemp -d)
  echo "== $name (${secs}s)"
  if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$dir/crashes/$name-" "$work" "$root/fuzz/corpus/$name" 2>"$dir/$name.log"; then
    echo "!! $name found a problem: see $dir/$name.log and $dir/crashes/"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$dir/$name.log" | sed 's/^/   /' || true
  rm -rf "$work"
done
exit $status
