#!/usr/bin/env bash
# Idle-connection flood on --http: what N TCP connections that never send a request cost
# patchcord-recv (on the `null` device, no sender). Opens N connections to its --http
# port and holds them for HOLD seconds; reports the receiver's memory (VmRSS, VmHWM) and
# open descriptors before, 1 s after the connects and at the end of the hold, how many
# connections the receiver had closed by then, how long after the flood a GET /metrics
# was served (tried every 100 ms), and the http_* counters of its /metrics. Then CHURN
# connections opened and closed at once, one after another: the receiver's CPU time for
# them (utime + stime, /proc/PID/stat).
#
# usage: bench/http_flood.sh                (from any directory)
#   env: N=1000 HOLD=6 CHURN=20000 BIN_DIR=target/release
# Build first: cargo build --release --bins
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
HOLD=${HOLD:-6}
CHURN=${CHURN:-20000}
B=${BIN_DIR:-target/release}
T=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || grep -E "stopped|panicked|error" "$T/recv.log"; rm -rf "$T"' EXIT
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$B/patchcord-recv" --listen 127.0.0.1:0 --device null --http "127.0.0.1:$PORT" \
    --duration $((HOLD + 60)) -q >"$T/recv.log" 2>&1 &
PID=$!
sleep 2
python3 - "$PORT" "$PID" "$N" "$HOLD" "$CHURN" <<'PY'
import os, socket, sys, time
port, pid, n, hold, churn = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                             float(sys.argv[4]), int(sys.argv[5]))

def memory():
    st = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return f"VmRSS {st['VmRSS'].strip()}, VmHWM {st['VmHWM'].strip()}, {fds} descriptors"

def get(path):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := c.recv(65536):
            answer += chunk
        return answer.decode()
    except OSError:
        return ""

print("before:", memory())
conns, t0 = [], time.time()
for _ in range(n):
    conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
flooded = time.time()
print(f"{n} connects in {flooded - t0:.2f} s")
served, shown = None, False
while time.time() - flooded < hold:
    if served is None and get("/metrics").startswith("HTTP/1.1 200"):
        served = time.time() - flooded
    if not shown and time.time() - flooded >= 1:
        print("1 s after:", memory())
        shown = True
    time.sleep(0.1)
print(f"{hold:.0f} s after:", memory())
closed = 0
for c in conns:
    c.setblocking(False)
    try:
        c.recv(1)
        closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(f"closed by the receiver: {closed} of {n}")
print(f"GET /metrics served {served:.2f} s after the flood" if served else "GET /metrics never served")
time.sleep(1.2)
print("".join(l + "\n" for l in get("/metrics").splitlines() if l.startswith("patchcord_recv_http")), end="", flush=True)
for c in conns:
    c.close()

def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

# (a refused connect is counted, not fatal: after tens of thousands of connections on
# loopback, one now and then meets the remains (TIME_WAIT) of an earlier one)
c0, t0, failed = cpu(), time.time(), 0
for _ in range(churn):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        failed += 1
took = time.time() - t0
time.sleep(0.5)
used = cpu() - c0
print(f"{churn} connects and closes ({failed} refused) in {took:.2f} s: "
      f"receiver CPU {used:.2f} s ({used / max(churn, 1) * 1e6:.0f} us a connection)")
print("receiver still running:", os.path.exists(f"/proc/{pid}/status"))
PY
