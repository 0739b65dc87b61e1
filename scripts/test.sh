#!/usr/bin/env bash
# The whole test suite: formatting and lints, unit tests of the sans-IO core, simulations,
# and end-to-end tests of the real binaries (virtual devices, JACK dummy server).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --all-targets --release -q -- -D warnings
cargo build --release --bins -q
cargo test --release --workspace
