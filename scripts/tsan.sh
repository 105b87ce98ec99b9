#!/usr/bin/env bash
# The tests under ThreadSanitizer (clang-14): configures build/tsan (unity
# batches: a third of the compile time), builds the server and the tests, and
# runs the unit tests, the end-to-end tests (which start the instrumented
# server) and the hostile-input suite through ctest. Every process, servers
# included, writes its reports under build/tsan/reports/; any report fails
# the script (docs/RELIABILITY.md, "ThreadSanitizer").
#   scripts/tsan.sh            # what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${FORYOU_TSAN_BUILD:-build/tsan}
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
    -DCMAKE_CXX_COMPILER=clang++-14 -DFORYOU_SANITIZE=thread -DFORYOU_WERROR=OFF \
    -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 > /dev/null
fi
cmake --build "$BUILD" -j "${JOBS:-2}" --target foryou foryou_unit_tests foryou_e2e_tests
reports="$PWD/$BUILD/reports"
rm -rf "$reports" && mkdir -p "$reports"
# Suppressions (fuzz/tsan.supp) name code foryou does not own, each with its
# reason. detect_deadlocks=0: the lock-order detector reports hnswlib's
# per-element link-list locks (taken in neighbour order when a loaded index
# is updated) with no usable stack, so they cannot be suppressed by name; a
# real deadlock would still hang its test into the ctest timeout.
export TSAN_OPTIONS="suppressions=$PWD/fuzz/tsan.supp detect_deadlocks=0 log_path=$reports/tsan"
# Not under TSan: BenchTest measures speed; EvalTest and the dataset replays
# are single-threaded engine code; the client, packaging, docs, browser and
# contract suites test what is around the server, not its threads (the demo
# scripts start servers the unit of which ClusterTest and the end-to-end
# tests cover); the ANN recall tests take minutes instrumented.
set +e
(cd "$BUILD" && ctest -j 1 --output-on-failure --timeout 600 \
  -E '^(BenchTest|EvalTest)\.|^(SovereignDemoScript|PythonClientTest|PackagingCheck|DocCommands|ClusterDemoScript|ConsoleTest|ContractTest)$|^AnnIndexTest\.(RecallAgainstBruteForce|GrowsBeyond|IdenticalVectorsDoNotTrapTheSearch)|^E2ETest\.ALikeShowsOnTheNextPage$')
rc=$?
set -e
found=$(find "$reports" -type f | wc -l)
if [ "$found" -gt 0 ]; then
  echo "tsan: $found report file(s):"
  for f in "$reports"/*; do echo "== $f"; head -60 "$f"; done
  exit 1
fi
echo "tsan: no report"
exit $rc
