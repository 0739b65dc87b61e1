#!/usr/bin/env bash
# Receiver scaling: CPU and output-callback duration of patchcord-recv playing N concurrent
# mono Opus streams (10 ms frames, 32 kb/s, from patchcord-loadgen over loopback) on the
# `null` virtual output device (the real output callback, run in real time, 480-frame =
# 10 ms periods), for each N in STREAMS.
#
# usage: bench/receiver_scale.sh            (from any directory)
#   env: STREAMS="1 16 64 256"  stream counts to measure
#        DURATION=20            seconds of load per N (the loadgen's --duration)
#        WARMUP=2               the steady window is [WARMUP, DURATION] s after load starts
#        LATENCY=40             receiver --latency: ms, or auto (the adaptive buffer)
#        RENDER_AHEAD=0         receiver --render-ahead: periods the render thread keeps ready
#                               (0: decode and mix inside the output callback)
#        BITRATE=32000 (per stream, b/s)
#        BIN_DIR=target/release where patchcord-recv / patchcord-loadgen are
#        KEEP=1                 keep the temporary directory with the raw logs / JSON
# Build first: cargo build --release --bins
#
# Prints one Markdown table row per N. Columns:
#   CPU %        receiver utime+stime over the steady window (/proc/PID/stat), % of one core
#   cb p50 %     median over the window's per-second records of callback_p50 (% of the period)
#   cb p99 %     median over the window's per-second records of callback_p99
#   cb max %     callback_max at the window's end; the receiver reports a running maximum
#                since start, so a value marked * was already reached before the window
#                (start-up) and the window's own maximum is at most that
#   packets received, late, concealed ms, underruns, xruns: the receiver's final totals
#   cb p99 max % the largest per-second callback_p99 inside the window
#   render p50 / p99 % (medians of per-second) and render max %: the rendering work per
#                period (decode + mix); equal to the callback's when RENDER_AHEAD=0
#   render underruns: frames the callback played as silence because the render thread was
#                late (RENDER_AHEAD > 0)
#   sent, late ticks: the loadgen's packets sent and ticks sent > 1 ms after their deadline
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-"1 16 64 256"}
D=${DURATION:-20}
WARMUP=${WARMUP:-2}
LATENCY=${LATENCY:-40}
AHEAD=${RENDER_AHEAD:-0}
B=${BIN_DIR:-target/release}

for bin in patchcord-recv patchcord-loadgen; do
    if [ ! -x "$B/$bin" ]; then
        echo "receiver_scale.sh: $B/$bin not found; run: cargo build --release --bins" >&2
        exit 1
    fi
done
if ! awk -v d="$D" -v w="$WARMUP" 'BEGIN { exit !(d + 0 > w + 1) }'; then
    echo "receiver_scale.sh: DURATION ($D) must exceed WARMUP ($WARMUP) by more than 1 s" >&2
    exit 1
fi

OUT=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "${KEEP:-}" ]; then
        echo "receiver_scale.sh: logs kept in $OUT" >&2
    else
        rm -rf "$OUT"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TCK=$(getconf CLK_TCK)
now() { date +%s.%N; }
# Sleep until absolute time $1 (seconds since the epoch, fractional).
sleep_until() {
    local s
    s=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
    sleep "$s"
}
# utime + stime of process $1, in clock ticks (fields 14 and 15; skip "pid (comm)").
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

echo "| N | receiver CPU % of one core | callback p50 % | callback p99 % (median of per-second) | callback max % | packets received | late | concealed ms | underruns | xruns | callback p99 max % | packets sent | loadgen late ticks | render p50 % | render p99 % | render max % | render underrun frames |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"

for N in $STREAMS; do
    PORT=$((20000 + RANDOM % 20000 * 2))
    STATS="$OUT/recv-$N.json"
    "$B/patchcord-recv" --listen "127.0.0.1:$PORT" --device null --channels 1 --period 480 \
        --max-streams "$N" --latency "$LATENCY" --render-ahead "$AHEAD" --duration $((${D%.*} + 4)) \
        --stats-json "$STATS" -q 2>"$OUT/recv-$N.err" &
    R=$!
    PIDS+=("$R")
    sleep 0.5
    if ! kill -0 "$R" 2>/dev/null; then
        echo "receiver_scale.sh: patchcord-recv exited early (N=$N):" >&2
        cat "$OUT/recv-$N.err" >&2
        exit 1
    fi

    L0=$(now)
    "$B/patchcord-loadgen" --to "127.0.0.1:$PORT" --streams "$N" --frame-ms 10 --bitrate "${BITRATE:-32000}" --duration "$D" --bye \
        >"$OUT/loadgen-$N.json" 2>"$OUT/loadgen-$N.err" &
    G=$!
    PIDS+=("$G")

    W0=$(awk -v a="$L0" -v b="$WARMUP" 'BEGIN { printf "%.6f", a + b }')
    W1=$(awk -v a="$L0" -v b="$D" 'BEGIN { printf "%.6f", a + b }')
    sleep_until "$W0"
    C0=$(cpu_ticks "$R"); T0=$(now)
    sleep_until "$W1"
    C1=$(cpu_ticks "$R"); T1=$(now)

    if ! wait "$G"; then
        echo "receiver_scale.sh: patchcord-loadgen failed (N=$N):" >&2
        cat "$OUT/loadgen-$N.err" >&2
        exit 1
    fi
    # The loadgen's BYEs release every stream; give the receiver a moment, then stop it
    # (SIGINT: it writes its final record) instead of idling to its --duration.
    sleep 0.5
    kill -INT "$R" 2>/dev/null || true
    wait "$R" || true

    CPU=$(awk -v c0="$C0" -v c1="$C1" -v t0="$T0" -v t1="$T1" -v tck="$TCK" \
        'BEGIN { printf "%.1f", 100 * (c1 - c0) / tck / (t1 - t0) }')

    python3 - "$N" "$STATS" "$OUT/loadgen-$N.json" "$W0" "$W1" "$CPU" <<'PY'
import json, statistics, sys

n, stats_path, loadgen_path = sys.argv[1], sys.argv[2], sys.argv[3]
w0, w1, cpu = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
recs = []
for line in open(stats_path):
    line = line.strip()
    if line:
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
if not recs:
    sys.exit(f"receiver_scale.sh: no stats records in {stats_path}")
final = recs[-1] if recs[-1].get("final") else None
per_sec = [r for r in recs if not r.get("final")]
# A per-second record at receiver time t covers (t - 1, t]; map receiver time to wall time
# through the output start (the stats clock starts when the output does, to within ms).
origin = per_sec[0]["output_start_unix_ns"] / 1e9 if per_sec else 0.0
win = [r for r in per_sec if origin + r["t"] - 1.0 >= w0 - 0.05 and origin + r["t"] <= w1 + 0.05]
before = [r for r in per_sec if origin + r["t"] < w0]

def pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}"

def med(key):
    v = [r[key] for r in win if r.get(key) is not None]
    return statistics.median(v) if v else None

def mx(key):
    v = [r[key] for r in win if r.get(key) is not None]
    return max(v) if v else None

cb_max = mx("callback_max")
cb_max_s = pct(cb_max)
if cb_max is not None and before and before[-1].get("callback_max") == cb_max:
    cb_max_s += "*"
tot = final or (per_sec[-1] if per_sec else {})
try:
    lg = json.loads(open(loadgen_path).read().strip().splitlines()[-1])
except (ValueError, IndexError, OSError):
    lg = {}
active = [r.get("active_streams") for r in win]
if win and min(active) < int(n):
    print(f"receiver_scale.sh: N={n}: only {min(active)} active streams in some window records", file=sys.stderr)
if tot.get("streams_refused"):
    print(f"receiver_scale.sh: N={n}: {tot['streams_refused']} streams refused", file=sys.stderr)
sent = lg.get("packets_sent")
if sent is not None and tot.get("packets_received", 0) > sent:
    print(f"receiver_scale.sh: N={n}: receiver counts {tot['packets_received']} packets received but only "
          f"{sent} were sent (receiver double-counts some released streams?)", file=sys.stderr)
if not win:
    print(f"receiver_scale.sh: N={n}: no per-second records inside the steady window", file=sys.stderr)
print(
    f"| {n} | {cpu} | {pct(med('callback_p50'))} | {pct(med('callback_p99'))} | {cb_max_s} "
    f"| {tot.get('packets_received', 'n/a')} | {tot.get('late', 'n/a')} "
    f"| {tot.get('concealed_ms', 0.0):.1f} | {tot.get('underruns', 'n/a')} | {tot.get('xruns', 'n/a')} "
    f"| {pct(mx('callback_p99'))} | {lg.get('packets_sent', 'n/a')} | {lg.get('late_ticks', 'n/a')} "
    f"| {pct(med('render_p50'))} | {pct(med('render_p99'))} | {pct(mx('render_max'))} "
    f"| {tot.get('render_underrun_frames', 'n/a')} |",
    flush=True,
)
PY
    PIDS=()
done
