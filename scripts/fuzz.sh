#!/usr/bin/env bash
# Fuzz the parsers and state machines that take input from outside the process (optional;
# nightly Rust and cargo-fuzz, installed here if missing). Each target runs SECONDS (default
# 60) under `nice -n 19`, one after the other; new inputs go to fuzz/work/<target>/ (not
# checked in), crashes to fuzz/artifacts/<target>/. The bodies are in
# common/src/fuzz.rs; the checked-in corpus fuzz/corpus/<target>/ is also replayed on stable
# by `cargo test -p patchcord-common --test fuzz_corpus`.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: rtp_validation red rtcp_compound sdp playout
#   scripts/fuzz.sh --cmin [TARGET...]         merge fuzz/work into a minimized fuzz/corpus
#
# The minimized corpus keeps one input per new edge (-use_counters=0: not per hit count),
# which keeps it small enough to check in, and every regression-* input (a crash, fixed).
#
# Builds with optimizations, debug assertions and overflow checks (-O -a) and no sanitizer
# (-s none): the code under test is safe Rust, and libopus, reached through FFI, is not
# instrumented either way.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
FLAGS=(-O -a -s none)

if [ "${1:-}" = "--cmin" ]; then
    shift
    targets=("$@")
    ((${#targets[@]})) || mapfile -t targets < <(cargo +nightly fuzz list)
    for t in "${targets[@]}"; do
        mkdir -p "work/$t" "work/$t.regressions"
        cp -n "corpus/$t"/* "work/$t/" 2>/dev/null || true
        cp "corpus/$t"/regression-* "work/$t.regressions/" 2>/dev/null || true
        rm -rf "corpus/$t"
        mkdir -p "corpus/$t"
        nice -n 19 cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "work/$t" -- -merge=1 -use_counters=0
        cp "work/$t.regressions"/* "corpus/$t/" 2>/dev/null || true
    done
    exit 0
fi

seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "fuzz: $t for ${seconds}s" >&2
    nice -n 19 cargo +nightly fuzz run "${FLAGS[@]}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1
done
