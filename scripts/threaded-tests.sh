#!/usr/bin/env bash
# Which unit test binaries start threads, measured: runs every unit test binary of a built
# tree under strace and counts the clone calls that make a thread (CLONE_THREAD). CI runs
# only those binaries (and the integration tests) under TSan (docs/testing.md), so each one
# must be in STARLING_THREADED_TESTS (tests/CMakeLists.txt). Exits 1 when a binary that
# starts threads is missing from that list; lists binaries there that start none.
#   scripts/threaded-tests.sh [build dir, default build]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
command -v strace >/dev/null || { echo "threaded-tests: needs strace (apt-get install strace)" >&2; exit 2; }
[[ -d $dir/tests ]] || { echo "threaded-tests: no $dir/tests: build first (./run build)" >&2; exit 2; }

listed=$(sed -n '/^set(STARLING_THREADED_TESTS/,/)/p' tests/CMakeLists.txt | tr -s ' ()\n' '\n' |
  grep -E '_test$' | sort)
status=0
for bin in "$dir"/tests/*_test; do
  name=$(basename "$bin")
  [[ $name =~ ^(integration|sim)_ ]] && continue
  threads=$(timeout 600 strace -f -qq -e trace=clone,clone3 "$bin" 2>&1 >/dev/null |
    grep -c CLONE_THREAD || true)
  in_list=no
  grep -qx "$name" <<<"$listed" && in_list=yes
  if ((threads > 0)) && [[ $in_list == no ]]; then
    echo "MISSING  $name starts $threads thread(s) but is not in STARLING_THREADED_TESTS"
    status=1
  elif ((threads == 0)) && [[ $in_list == yes ]]; then
    echo "EXTRA    $name is listed but started no thread"
  elif ((threads > 0)); then
    echo "ok       $name ($threads threads)"
  fi
done
exit "$status"
