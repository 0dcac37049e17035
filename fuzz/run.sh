#!/usr/bin/env bash
# Builds and runs every fuzz target for FUZZ_SECONDS (default 60) seconds each.
# Fails, naming the saved input, as soon as a target crashes.
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc accept the
# -Zsanitizer and coverage flags cargo-fuzz passes (see README.md).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   space-separated subset (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER address (default) or none
set -euo pipefail

cd "$(dirname "$0")"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

nice -n 10 cargo fuzz build --sanitizer "$FUZZ_SANITIZER"

failed=0
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target/last-run.log"
    echo "== $target: ${FUZZ_SECONDS}s"
    # The committed seeds are a second, read-only corpus directory: new inputs
    # go to corpus/<target> (git-ignored), crashes to artifacts/<target>.
    if nice -n 10 cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" \
        "corpus/$target" "seeds/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$log" | sed "s/^/   /"
    else
        failed=1
        tail -n 40 "$log"
        echo "FAILED: $target crashed; input saved as:"
        grep -Eo 'artifacts/[^ /]+/(crash|leak|timeout|oom|slow-unit)-[0-9a-f]+' "$log" | sort -u | sed "s|^|   $(pwd)/|" || true
        echo "   reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $target <that file>"
    fi
done

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "all fuzz targets ran ${FUZZ_SECONDS}s without a crash"
