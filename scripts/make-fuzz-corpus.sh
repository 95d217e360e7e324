#!/usr/bin/env bash
# Regenerates the generated seed corpora of tests/fuzz/ (datagram, frame, token, pki,
# admin_request) from the encoders' own output: builds `starling-fuzz-seeds` in a build
# directory (default build/, any compiler) and runs it on tests/fuzz/corpus/. The
# config_fuzz seeds are hand-written and left alone. Keys and tokens are random, so a run
# changes those files; commit the result. Usage: scripts/make-fuzz-corpus.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
if [[ ! -f $dir/build.ninja ]]; then
  cmake -S . -B "$dir" -G Ninja
fi
cmake --build "$dir" --target starling-fuzz-seeds
"$dir/fuzz/starling-fuzz-seeds" tests/fuzz/corpus
