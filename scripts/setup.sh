#!/usr/bin/env bash
# Installs what patchcord needs on Debian 12 (run as root): the C toolchain pieces for the
# bundled libopus (cmake), ALSA, JACK and PipeWire headers for cpal (PipeWire's bindings
# are generated with bindgen: libclang), the JACK, PulseAudio and PipeWire servers and
# tools used by the tests (systemd-analyze, man, zsh and fish check the packaging; chromium
# and the Python modules prometheus_client and websocket-client check the dashboard and
# /metrics), a Rust toolchain
# if none is present, and cargo-deb (scripts/dist.sh builds the .deb with it). Installs
# only what is missing.
set -euo pipefail

PACKAGES=(build-essential cmake pkg-config libasound2-dev libjack-jackd2-dev jackd2 coreutils procps psmisc
          gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
          ffmpeg iproute2 util-linux
          libpipewire-0.3-dev libclang-dev clang
          pulseaudio pulseaudio-utils libasound2-plugins pipewire pipewire-bin pipewire-pulse pipewire-jack
          wireplumber dbus systemd man-db zsh fish
          chromium python3 python3-pip)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install packages (or install them yourself: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup: no Rust toolchain; installing it with rustup" >&2
        apt-get install -y -q --no-install-recommends curl ca-certificates >&2
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt >&2
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

if ! cargo deb --version >/dev/null 2>&1; then
    echo "setup: installing cargo-deb (cargo install cargo-deb)" >&2
    cargo install cargo-deb --locked -q >&2 ||
        echo "setup: could not install cargo-deb; scripts/dist.sh will make no .deb" >&2
fi

# The monitoring tests (tests/tests/e2e_monitoring.rs): Prometheus' own text-format parser,
# and a DevTools-protocol client to drive chromium.
if ! python3 -c "import prometheus_client, websocket" >/dev/null 2>&1; then
    echo "setup: installing the Python modules prometheus_client and websocket-client (pip)" >&2
    python3 -m pip install -q prometheus_client websocket-client >&2 ||
        python3 -m pip install -q --break-system-packages prometheus_client websocket-client >&2
fi
