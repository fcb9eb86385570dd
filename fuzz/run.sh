#!/usr/bin/env bash
# Runs one fuzz target for a given time: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
# The corpus (fuzz/corpus/TARGET) starts from the committed seeds (fuzz/seeds/TARGET); crashes
# land in fuzz/artifacts/TARGET and make the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -lt 2 ]; then
    echo "usage: fuzz/run.sh TARGET SECONDS [libFuzzer flags]; targets: $(cargo fuzz list 2>/dev/null | tr '\n' ' ')" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
# libFuzzer needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
mkdir -p "corpus/$target"
cp -n "seeds/$target/"* "corpus/$target/" 2>/dev/null || true
# FUZZ_BUILD=dev builds without optimisation: half the compile time, for short smoke runs (CI).
build=(--release --debug-assertions)
[ "${FUZZ_BUILD:-release}" = dev ] && build=(--dev)
exec cargo fuzz run "${build[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
