#!/usr/bin/env bash
# Run every fuzz target for N seconds (default 60) over its corpus in fuzz/corpus, with
# cargo-fuzz on the nightly toolchain. A crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/. Without a nightly toolchain the step is skipped, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain here; skipped"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
cargo +nightly fuzz build -O
for t in frames topic definitions mgmt_request connection; do
    # Run over a copy, so that a CI run leaves the committed corpus as it was.
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/"
    log=$(mktemp)
    status=0
    cargo +nightly fuzz run -O "$t" "$work" -- -max_total_time="$SECS" -max_len=65536 \
        >"$log" 2>&1 || status=$?
    grep -E "^Done|ERROR|SUMMARY|panicked" "$log" || true
    rm -rf "$work" "$log"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t found a crash (see fuzz/artifacts/$t)"
        exit 1
    fi
    echo "fuzz: $t ok"
done
