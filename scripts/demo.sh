#!/usr/bin/env bash
# The demo: sender and receiver on this machine, streaming a 440 Hz test tone over loopback
# UDP for about 10 seconds. Uses the sound card when there is one, else the virtual devices
# (the received audio is written to patchcord-demo.wav). Shows both live status lines and
# the receiver's summary with the measured end-to-end latency.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --bins -q
BIN=target/release
PORT=${PATCHCORD_DEMO_PORT:-5004}
SECONDS_TO_RUN=10

if grep -qs '^ *[0-9]' /proc/asound/cards; then
    IN=(); OUT=()
    echo "demo: sound card found: capturing from the default input, playing on the default output"
else
    IN=(--device tone:440); OUT=(--device "wav:$PWD/patchcord-demo.wav")
    echo "demo: no sound card: sending a 440 Hz tone from the virtual device tone:440,"
    echo "      receiving into the virtual device wav:$PWD/patchcord-demo.wav"
fi

"$BIN/patchcord-recv" --listen "127.0.0.1:$PORT" "${OUT[@]}" \
    --duration $((SECONDS_TO_RUN + 1)) --stats-json patchcord-demo-recv.json &
RECV=$!
trap 'kill $RECV 2>/dev/null || true' EXIT
sleep 0.5
"$BIN/patchcord-send" --to "127.0.0.1:$PORT" "${IN[@]}" --duration "$SECONDS_TO_RUN"
wait $RECV
trap - EXIT
echo
echo "demo: per-second stats of the receiver are in patchcord-demo-recv.json"
if [ ${#OUT[@]} -gt 0 ]; then
    echo "demo: received audio: $PWD/patchcord-demo.wav"
fi
