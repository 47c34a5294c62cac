#!/usr/bin/env bash
# Runs a libFuzzer target for a bounded time, seeded from docs/protocol.md's vectors and the
# committed regression corpus. Fails on any finding (libFuzzer exits non-zero and leaves the
# crashing input in the artifact directory). Prints how many inputs it executed.
# Usage: run_fuzzer.sh FUZZER SECONDS SOURCE_DIR WORK_DIR
set -euo pipefail
fuzzer=$1 seconds=$2 source_dir=$3 work=$4
name=$(basename "$fuzzer")
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"
/usr/bin/python3 "$source_dir/tests/fuzz/seeds_from_docs.py" "$source_dir/docs/protocol.md" "$work/seeds"
regressions=()
[[ -d $source_dir/tests/fuzz/regressions/$name ]] && regressions=("$source_dir/tests/fuzz/regressions/$name")
log=$work/last-run.log
status=0
"$fuzzer" -max_total_time="$seconds" -max_len=8192 -timeout=10 -malloc_limit_mb=256 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "$work/seeds" "${regressions[@]}" >"$log" 2>&1 || status=$?
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done|ERROR|SUMMARY" "$log" || true
if ((status != 0)); then
  tail -n 60 "$log"
  echo "$name: FINDING (exit $status); reproducer in $work/artifacts/" >&2
  exit 1
fi
echo "$name: clean after ${seconds}s"
