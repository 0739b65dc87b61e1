#!/usr/bin/env bash
# What goes onto a second machine: the man pages and bash / zsh / fish completions of the
# three binaries (patchcord-send, patchcord-recv, patchcord-selftest), written by the
# release binaries themselves from their clap definitions (`--generate KIND`) into
# target/release/generated/, so they list exactly the flags that were built; and, in
# target/dist/ when cargo-deb is installed (`cargo install cargo-deb`), the Debian package
# `patchcord` carrying the binaries, those files, the systemd units and the example configs
# (packaging/; the package's metadata is in receiver/Cargo.toml). scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins -q -p patchcord-sender -p patchcord-receiver -p patchcord-selftest
gen=target/release/generated
out=target/dist
rm -rf "$gen" "$out"
mkdir -p "$gen/man" "$gen/completions" "$out"
for bin in patchcord-send patchcord-recv patchcord-selftest; do
    exe=target/release/$bin
    "$exe" --generate man >"$gen/man/$bin.1"
    gzip -9nk "$gen/man/$bin.1"
    "$exe" --generate complete-bash >"$gen/completions/$bin.bash"
    "$exe" --generate complete-zsh >"$gen/completions/_$bin"
    "$exe" --generate complete-fish >"$gen/completions/$bin.fish"
done
if cargo deb --version >/dev/null 2>&1; then
    cargo deb --no-build --strip -p patchcord-receiver -o "$out/" >&2
else
    echo "dist: cargo-deb is not installed (cargo install cargo-deb): no .deb; man pages and completions are in $gen" >&2
fi
