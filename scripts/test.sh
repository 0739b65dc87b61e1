#!/usr/bin/env bash
# The whole test suite: formatting and lints, unit tests of the sans-IO core, simulations,
# end-to-end tests of the real binaries (virtual devices, JACK dummy server), and the
# packaging (scripts/dist.sh: man pages, completions, the .deb).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --all-targets --release -q -- -D warnings
cargo build --release --bins -q
scripts/dist.sh
cargo test --release --workspace --no-fail-fast
