#!/usr/bin/env bash
# Playout quality side by side with GStreamer (issue 8).
#
# What it measures: the same Opus/RTP stream (real patchcord-send, 20 ms frames, 64 kb/s,
# in-band FEC, mono) goes through the seeded impairment proxy patchcord-impair (same
# profile and seed for every row) to one receiver per row, run one after the other:
#   patchcord-recv adaptive (--latency auto), patchcord-recv fixed at the adaptive run's
#   mean delay (rounded) and fixed 30 ms; GStreamer (udpsrc ! rtpjitterbuffer do-lost=true
#   ! rtpopusdepay ! opusdec plc=true use-inband-fec=true ! wavenc) at latency 500 ms (the
#   "ceiling"), at a sweep of latencies, and at patchcord's mean delay.
# Signals: speech (espeak-ng, ~20 s) and a "music-like" mix (5/10/15 kHz tones, a low tone,
# drum-like bursts and clicks, 15 s). Every output is recorded to a float WAV and compared
# with the input (bench/playout_quality.py): PESQ-WB after cross-correlation alignment,
# measured end-to-end lag (GStreamer: a second tee branch into a synchronised fdsink,
# time-stamped as it plays, since wavenc ! filesink writes as fast as buffers come; that
# sink plays at the pipeline latency GStreamer configures: the jitterbuffer latency + 120 ms
# that opusdec reports + the sink's 20 ms processing deadline), patchcord's delay gauges and concealment counters, and for the
# music signal the level wobble of the three tones per 50 ms window. The method is in the
# header of bench/playout_quality.py and in BENCHMARKS.md section 4.
#
# usage: bench/playout_quality.sh                (from any directory)
#   env: PATCHCORD_BIN=target/release   binaries to measure (relative to the repo, or absolute)
#        PROFILES="clean loss1 loss5j loss20 bursty jitter20 jitter50"
#                 (loss5j = loss=5%,delay=10ms,jitter=10ms:uniform,fifo=off; others: named
#                 patchcord-impair profiles, or any profile string without spaces)
#        SIGNALS="speech music"
#        GST_LATENCIES="10 20 30 60 200"   the GStreamer sweep (ms)
#        SEED=8               impairment seed (same for every row)
#        BASE_PORT=27000      first of 4 UDP ports on 127.0.0.1 (moved up by 10 if busy)
#        OUT_DIR=bench/results
#        NO_INSTALL=1         do not try apt-get / pip for missing tools
#   quick run (a few minutes): PROFILES="clean loss5j" SIGNALS=speech GST_LATENCIES="20 200"
# Output: Markdown tables on stdout and in $OUT_DIR/playout_quality-<date>-<commit>.md, the
# raw per-row JSON lines in the .jsonl beside it. Rows run sequentially (timing fidelity).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
HERE="$REPO/bench"
BIN=${PATCHCORD_BIN:-target/release}
case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
PROFILES=${PROFILES:-"clean loss1 loss5j loss20 bursty jitter20 jitter50"}
SIGNALS=${SIGNALS:-"speech music"}
GST_LATENCIES=${GST_LATENCIES:-"10 20 30 60 200"}
SEED=${SEED:-8}
BASE_PORT=${BASE_PORT:-27000}
OUT_DIR=${OUT_DIR:-bench/results}
CMDLINE="PATCHCORD_BIN=${PATCHCORD_BIN:-target/release} PROFILES=\"$PROFILES\" SIGNALS=\"$SIGNALS\" GST_LATENCIES=\"$GST_LATENCIES\" SEED=$SEED bash bench/playout_quality.sh"

log() { echo "[$(date +%T)] $*" >&2; }

# ------------------------------------------------------------------ tools (idempotent)
need_apt=()
for t in espeak-ng:espeak-ng sox:sox gst-launch-1.0:gstreamer1.0-tools ffmpeg:ffmpeg; do
    command -v "${t%%:*}" >/dev/null || need_apt+=("${t#*:}")
done
gst-inspect-1.0 rtpjitterbuffer >/dev/null 2>&1 || need_apt+=(gstreamer1.0-plugins-good)
gst-inspect-1.0 opusdec >/dev/null 2>&1 || need_apt+=(gstreamer1.0-plugins-base)
if ((${#need_apt[@]})) && [ -z "${NO_INSTALL:-}" ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c "import pesq, numpy, scipy, soundfile" 2>/dev/null && [ -z "${NO_INSTALL:-}" ]; then
    log "installing python packages"
    pip install -q pesq numpy scipy soundfile 2>&1 | grep -v WARNING || true
fi
for t in espeak-ng sox gst-launch-1.0 python3 ss timeout; do
    command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 1; }
done
python3 -c "import pesq, numpy, scipy, soundfile" || exit 1
for b in patchcord-send patchcord-recv patchcord-impair; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (cargo build --release --bins)" >&2; exit 1; }
done

# ------------------------------------------------------------------ processes and ports
PIDS=()
WORK=$(mktemp -d /tmp/playout_quality.XXXXXX)
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
    [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { [ -n "$(ss -Hlun "( sport = :$1 )" 2>/dev/null)" ]; }
ports_free() { local p; for p in $(seq "$1" $(($1 + 3))); do port_busy "$p" && return 1; done; return 0; }
while ! ports_free "$BASE_PORT"; do
    BASE_PORT=$((BASE_PORT + 10))
    ((BASE_PORT > 28990)) && { echo "no free ports" >&2; exit 1; }
done
PI=$BASE_PORT        # impair RTP (+1 RTCP)
PR=$((BASE_PORT + 2)) # receiver RTP (+1 RTCP)

# wait for PID up to S seconds, then SIGKILL; returns the exit status (137 when killed)
wait_for() {
    local pid=$1 s=$2 i=0
    while kill -0 "$pid" 2>/dev/null && ((i < s * 10)); do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 137; fi
    wait "$pid" 2>/dev/null
}

# ------------------------------------------------------------------ signals
SIG_DIR="$WORK/signals"
mkdir -p "$SIG_DIR"
make_signals() {
    espeak-ng -v en-us -s 150 -w "$SIG_DIR/speech_raw.wav" \
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. \
It is easy to tell the depth of a well. These days a chicken leg is a rare dish. Rice is often \
served in round bowls. The juice of lemons makes fine punch. The box was thrown beside the parked truck." || return 1
    sox "$SIG_DIR/speech_raw.wav" -r 48000 -c 1 -e floating-point -b 32 "$SIG_DIR/speech48.wav" \
        norm -3 pad 0.5 0.5 || return 1
    sox "$SIG_DIR/speech48.wav" -r 16000 -e floating-point -b 32 "$SIG_DIR/speech16.wav" || return 1
    python3 "$HERE/playout_quality.py" music "$SIG_DIR/music48.wav" --seconds 15 --seed "$SEED" || return 1
    sox "$SIG_DIR/music48.wav" -r 16000 "$SIG_DIR/music16.wav" || return 1
}
make_signals || { echo "could not make the signals" >&2; exit 1; }

profile_arg() {
    case "$1" in
        loss5j) echo "loss=5%,delay=10ms,jitter=10ms:uniform,fifo=off" ;;
        *) echo "$1" ;;
    esac
}

# ------------------------------------------------------------------ one row
# run_row SIGNAL PROFILE KIND(patchcord|gst) RECEIVER_LABEL SETTING(auto|ms) -> appends to $ROWS
ROWN=0
run_row() {
    local sig=$1 prof=$2 kind=$3 label=$4 setting=$5
    ROWN=$((ROWN + 1))
    local d="$WORK/row$ROWN"; mkdir -p "$d"
    local in="$SIG_DIR/${sig}48.wav" rec="$d/out.wav" status=ok
    local len; len=$(soxi -D "$in")
    local dur; dur=$(python3 -c "print(round($len + 0.5, 2))")
    local setting_ms=null; [ "$setting" != auto ] && setting_ms=$setting
    log "row $ROWN: $sig $prof $label $setting"
    if ! ports_free "$BASE_PORT"; then status="failed: ports $BASE_PORT..$((BASE_PORT + 3)) busy"; fi
    local rpid="" spid="" ipid="" stpid=""
    if [ "$status" = ok ]; then
        if [ "$kind" = patchcord ]; then
            "$BIN/patchcord-recv" --listen "127.0.0.1:$PR" --device "wav:$rec" --channels 1 \
                --latency "$setting" --stats-json "$d/recv.json" -q 2>"$d/recv.err" &
            rpid=$!
        else
            mkfifo "$d/fifo"
            python3 "$HERE/playout_quality.py" stamp "$d/fifo" "$d/stamps.json" &
            stpid=$!
            gst-launch-1.0 -e udpsrc address=127.0.0.1 port="$PR" \
                caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96" \
                ! rtpjitterbuffer latency="$setting" do-lost=true ! rtpopusdepay \
                ! opusdec plc=true use-inband-fec=true ! audioconvert \
                ! audio/x-raw,format=F32LE,channels=1,rate=48000 ! tee name=t \
                t. ! queue ! wavenc ! filesink location="$rec" \
                t. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! fdsink fd=3 sync=true >"$d/gst.out" 2>"$d/recv.err" 3>"$d/fifo" &
            rpid=$!
        fi
        PIDS+=("$rpid" $stpid)
        "$BIN/patchcord-impair" --listen "127.0.0.1:$PI" --to "127.0.0.1:$PR" \
            --profile "$(profile_arg "$prof")" --seed "$SEED" --quiet \
            --stats-json "$d/impair.json" 2>"$d/impair.err" &
        ipid=$!; PIDS+=("$ipid")
        sleep 0.7
        kill -0 "$rpid" 2>/dev/null || status="failed: receiver exited at start ($(tail -c 150 "$d/recv.err" | tr '\n' ' '))"
        kill -0 "$ipid" 2>/dev/null || status="failed: impair exited at start"
    fi
    if [ "$status" = ok ]; then
        timeout -s INT $(python3 -c "print(int($dur + 15))") \
            "$BIN/patchcord-send" --to "127.0.0.1:$PI" --device "wav:$in" --frame-ms 20 \
            --bitrate 64000 --fec --channels 1 --duration "$dur" --stats-json "$d/send.json" -q \
            2>"$d/send.err"
        local rc=$?
        ((rc != 0)) && status="failed: sender exit $rc ($(tail -c 150 "$d/send.err" | tr '\n' ' '))"
    fi
    # let the impaired tail arrive (jitter50 holds packets ~0.3 s, spikes more), then stop
    sleep 1.2
    [ -n "$ipid" ] && { kill -INT "$ipid" 2>/dev/null; wait_for "$ipid" 5; }
    sleep 0.8
    if [ -n "$rpid" ]; then
        kill -INT "$rpid" 2>/dev/null
        wait_for "$rpid" 15; local rrc=$?
        ((rrc != 0)) && [ "$status" = ok ] && status="failed: receiver exit $rrc ($(tail -c 150 "$d/recv.err" | tr '\n' ' '))"
    fi
    [ -n "$stpid" ] && wait_for "$stpid" 5
    PIDS=()
    local meta
    meta=$(printf '{"signal":"%s","profile":"%s","profile_spec":"%s","seed":%s,"kind":"%s","receiver":"%s","setting":"%s","setting_ms":%s}' \
        "$sig" "$prof" "$(profile_arg "$prof")" "$SEED" "$kind" "$label" \
        "$([ "$kind" = gst ] && echo "latency=$setting" || echo "--latency $setting")" "$setting_ms")
    python3 "$HERE/playout_quality.py" analyze --signal "$sig" --kind "$kind" \
        --ref48 "$in" --ref16 "$SIG_DIR/${sig}16.wav" --rec "$rec" --meta "$meta" --status "$status" \
        --recv-stats "$d/recv.json" --send-stats "$d/send.json" --impair-stats "$d/impair.json" \
        --stamps "$d/stamps.json" --out "$d/row.json" >/dev/null 2>"$d/analyze.err" \
        || echo "$meta" | python3 -c "import json,sys; r=json.load(sys.stdin); r['status']='failed: analysis crashed'; print(json.dumps(r))" >"$d/row.json"
    cat "$d/row.json" >>"$ROWS"; echo >>"$ROWS"
    log "  -> $(python3 -c "import json; r=json.load(open('$d/row.json')); print(r['status'], 'pesq', r.get('pesq_wb'), 'lag', r.get('lag_ms'), 'delay', r.get('delay_mean_ms'), 'conceal', r.get('concealment_events'))")"
    LAST_ROW="$d/row.json"
}

# ------------------------------------------------------------------ header
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+dirty" || true)
STAMP=$(date +%Y%m%d-%H%M)
mkdir -p "$OUT_DIR"
MD="$OUT_DIR/playout_quality-$STAMP-$COMMIT.md"
ROWS="$OUT_DIR/playout_quality-$STAMP-$COMMIT.jsonl"
: >"$ROWS"
MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
    echo "## playout_quality $(date -u +%FT%TZ)"
    echo
    echo "- commit: $COMMIT$DIRTY ($(git log -1 --format=%s 2>/dev/null | cut -c1-80))"
    echo "- binaries: $BIN ($("$BIN/patchcord-recv" --version 2>/dev/null))"
    echo "- machine: $(nproc) cores, $MODEL; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- GStreamer: $(gst-launch-1.0 --version | head -1); sender: --frame-ms 20 --bitrate 64000 --fec --channels 1"
    echo "- seed $SEED; profiles: $PROFILES (loss5j = $(profile_arg loss5j))"
    echo "- command: \`$CMDLINE\`"
} | tee "$MD" >&2

# ------------------------------------------------------------------ rows
for sig in $SIGNALS; do
    for prof in $PROFILES; do
        run_row "$sig" "$prof" patchcord "patchcord adaptive" auto
        M=$(python3 "$HERE/playout_quality.py" field "$LAST_ROW" delay_mean_ms)
        M=$(python3 -c "v='$M'; print(max(1, round(float(v))) if v else '')")
        if [ -n "$M" ]; then
            run_row "$sig" "$prof" patchcord "patchcord fixed @adaptive mean" "$M"
        else
            log "no adaptive mean delay: skipping the rows at that delay"
        fi
        run_row "$sig" "$prof" patchcord "patchcord fixed" 30
        run_row "$sig" "$prof" gst "gst ceiling" 500
        for L in $GST_LATENCIES; do run_row "$sig" "$prof" gst "gst sweep" "$L"; done
        if [ -n "$M" ] && ! [[ " $GST_LATENCIES " == *" $M "* ]]; then
            run_row "$sig" "$prof" gst "gst @patchcord mean" "$M"
        fi
    done
done
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$MD" >&2
python3 "$HERE/playout_quality.py" report --rows "$ROWS" --md "$MD"
echo >&2
echo "written: $MD and $ROWS" >&2
