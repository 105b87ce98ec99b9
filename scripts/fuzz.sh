#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang-14, ASan+UBSan) in build/asan
# and runs each for SECONDS (default 30) from its seed corpus in
# fuzz/corpus/NAME, on a scratch copy (the tracked corpus is never written).
# Prints executions per harness; exits 1 on any finding (crash, leak, UB,
# timeout), leaving the reproducer in build/asan/findings/.
#   scripts/fuzz.sh [SECONDS] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-30}
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(json_body log_record wire http_request policy audit_log snapshot)
bash scripts/install-deps.sh
if [ ! -f build/asan/build.ninja ]; then
  cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
    -DCMAKE_CXX_COMPILER=clang++-14 \
    -DFORYOU_FUZZ=ON -DFORYOU_WERROR=OFF -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 > /dev/null
fi
targets=()
for h in "${HARNESSES[@]}"; do targets+=("fuzz_$h"); done
cmake --build build/asan -j "${JOBS:-2}" --target "${targets[@]}"
mkdir -p build/asan/findings
failed=0
for h in "${HARNESSES[@]}"; do
  work=$(mktemp -d)
  [ -d "fuzz/corpus/$h" ] && cp -r "fuzz/corpus/$h/." "$work/"
  log=build/asan/findings/$h.log
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "build/asan/fuzz_$h" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="build/asan/findings/$h-" -print_final_stats=1 "$work" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ $rc -ne 0 ]; then
    echo "fuzz_$h: FINDING after $execs executions (exit $rc); see $log"
    tail -30 "$log"
    failed=1
  else
    echo "fuzz_$h: $execs executions in ${SECONDS_PER} s, no finding"
  fi
  rm -rf "$work"
done
exit $failed
