#!/usr/bin/env bash
# SSRC flood: what a flood of one-off SSRCs costs patchcord-recv. One UDP socket sends
# RATE packets a second for SECONDS, cycling through N SSRCs (each SSRC's packets in
# sequence and consistent with each other, a 10 ms CELT TOC and 80 bytes of garbage), at a
# receiver on the `null` device with --max-streams MAX (no sender of its own). Reports the
# receiver's CPU over the run (utime+stime, /proc/PID/stat), its peak memory (VmHWM), and
# from its final JSON record the datagrams it read, the flood's fate (unvalidated, evicted
# from probation, streams started), the output callback's p99 and max (fraction of the
# period), xruns and kernel socket drops.
#
# usage: bench/ssrc_flood.sh                (from any directory)
#   env: RATE=20000 SECONDS_=6 N=10000 MAX="32 1024" BIN_DIR=target/release
# Build first: cargo build --release --bins
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20000}
SECS=${SECONDS_:-6}
N=${N:-10000}
MAX=${MAX:-32 1024}
B=${BIN_DIR:-target/release}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat >"$T/flood.py" <<'PY'
import socket, struct, sys, time
port, rate, secs, n = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
body = bytes((i * 73 + 11) % 256 for i in range(80))
t0, k = time.time(), 0
while time.time() - t0 < secs:
    for _ in range(100):
        i, r = k % n, k // n
        d = struct.pack('!BBHII', 0x80, 96, r & 0xffff, (r * 480) & 0xffffffff, 0x10000000 + i)
        s.sendto(d + bytes([30 << 3]) + body, ('127.0.0.1', port))
        k += 1
    dt = k / rate - (time.time() - t0)
    if dt > 0:
        time.sleep(dt)
print(k)
PY
echo "| --max-streams | sent | CPU s (of $SECS s) | VmHWM MB | datagrams read | unvalidated | evicted | streams started | callback p99 / max % | xruns | socket drops |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for m in $MAX; do
    port=$((42000 + m))
    "$B/patchcord-recv" --listen "127.0.0.1:$port" --device null --max-streams "$m" \
        --duration "$(echo "$SECS + 3" | bc)" --stats-json "$T/r.json" -q 2>"$T/r.err" &
    rp=$!
    sleep 1
    sent=$(python3 "$T/flood.py" "$port" "$RATE" "$SECS" "$N")
    cpu=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$rp/stat")
    hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$rp/status")
    wait "$rp"
    tail -1 "$T/r.json" | python3 -c "
import json, sys
d = json.load(sys.stdin)
print(f\"| $m | $sent | $cpu | $hwm | {d['datagrams']} | {d['unvalidated']} | {d['probation_evicted']} | {d['streams_started']} | {100*d['callback_p99']:.2f} / {100*d['callback_max']:.2f} | {d['xruns']} | {d['socket_drops']} |\")"
done
