#!/usr/bin/env bash
# Round-trip latency of sender -> loopback UDP -> receiver on the JACK dummy backend
# (48 kHz, 64-frame periods), read by jack_iodelay, for the smallest --latency that plays
# RUN_SECONDS without a single underrun (ascending search).
#
# usage: bench/jack_latency.sh FRAME_MS "LATENCIES..." [rt|nort] [extra sender flags...]
#   e.g. bench/jack_latency.sh 2.5 "2 3 4 6 8" nort --application lowdelay --bitrate 256000
# Prints one line per run: frame_ms latency_ms underruns late concealed_ms xruns
#   corrections rtt_median_ms rtt_min_ms rtt_max_ms readings reported_latency_ms
#   reported_median_ms (the receiver's readings while jack_iodelay measured)
# The clients are bench-send / bench-recv; their ports also connect to the physical ports
# (system:*) as by default, or to nothing but jack_iodelay with NO_CONNECT=1.
set -euo pipefail
cd "$(dirname "$0")/.."
FRAME=$1; LATS=$2; MODE=${3:-nort}; shift 3 || true
RUN=${RUN_SECONDS:-60}
B=${BIN_DIR:-target/release}
CONNECT=(); [ "${NO_CONNECT:-0}" = 1 ] && CONNECT=(--no-connect)
SERVER="patchcord-bench-$$"
export JACK_DEFAULT_SERVER=$SERVER JACK_NO_START_SERVER=1
RTFLAG=-r; [ "$MODE" = rt ] && RTFLAG=-R
OUT=$(mktemp -d)
jackd -n "$SERVER" $RTFLAG -d dummy -r 48000 -p 64 >"$OUT/jackd.log" 2>&1 &
JACKD=$!
trap 'kill $JACKD 2>/dev/null; wait $JACKD 2>/dev/null || true' EXIT
for _ in $(seq 50); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
for LAT in $LATS; do
    PORT=$((20000 + RANDOM % 20000 * 2))
    "$B/patchcord-recv" --host jack --jack-name bench-recv "${CONNECT[@]}" --channels 1 --listen 127.0.0.1:$PORT --latency "$LAT" \
        --duration $((RUN + 4)) --stats-json "$OUT/recv.json" -q 2>"$OUT/recv.err" &
    R=$!
    sleep 0.5
    "$B/patchcord-send" --host jack --jack-name bench-send "${CONNECT[@]}" --channels 1 --to 127.0.0.1:$PORT --frame-ms "$FRAME" \
        --duration $((RUN + 3)) -q "$@" 2>"$OUT/send.err" &
    S=$!
    for _ in $(seq 50); do jack_lsp | grep -q "bench-send:in_1" && break; sleep 0.1; done
    stdbuf -oL timeout "$RUN" jack_iodelay >"$OUT/iodelay.log" 2>/dev/null &
    I=$!
    for _ in $(seq 50); do jack_lsp | grep -q jack_delay:in && break; sleep 0.1; done
    jack_connect jack_delay:out bench-send:in_1
    jack_connect bench-recv:out_1 jack_delay:in
    # measurement window: the RUN seconds jack_iodelay is connected
    sleep 0.2
    python3 - "$OUT/recv.json" >"$OUT/before.json" <<'PY'
import json,sys
lines=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(json.dumps(dict(lines[-1] if lines else {}, records_before=len(lines))))
PY
    wait $I || true
    python3 - "$OUT/recv.json" "$OUT/before.json" >"$OUT/after.json" <<'PY'
import json,statistics,sys
lines=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n=json.load(open(sys.argv[2])).get('records_before', 0)
window=[l['latency_ms'] for l in lines[n:] if isinstance(l.get('latency_ms'), (int, float))]
print(json.dumps(dict(lines[-1], reported_median=statistics.median(window) if window else None)))
PY
    wait $S $R || true
    set +e
    python3 - "$FRAME" "$LAT" "$OUT" <<'PY'
import json,sys,statistics
frame,lat,out=sys.argv[1],sys.argv[2],sys.argv[3]
b=json.load(open(out+'/before.json')); a=json.load(open(out+'/after.json'))
d=lambda k: (a.get(k) or 0)-(b.get(k) or 0)
r=[float(l.split()[0])/48.0 for l in open(out+'/iodelay.log') if 'total roundtrip latency' in l]
med=statistics.median(r) if r else float('nan')
print(f"{frame} {lat} {d('underruns')} {d('late')} {d('concealed_ms'):.1f} {d('xruns')} {d('tsm_operations')} "
      f"{med:.3f} {min(r) if r else float('nan'):.3f} {max(r) if r else float('nan'):.3f} {len(r)} {a.get('latency_ms')} "
      f"{a.get('reported_median')}")
sys.exit(0 if d('underruns') == 0 and d('late') == 0 else 1)
PY
    clean=$?
    set -e
    if [ "${STOP_AT_FIRST_CLEAN:-1}" = 1 ] && [ $clean = 0 ]; then break; fi
done
