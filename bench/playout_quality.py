#!/usr/bin/env python3
"""Helper for bench/playout_quality.sh: makes the test signals, time-stamps GStreamer's
output, analyses one recorded row, and writes the Markdown report.

Subcommands (all called by the shell script):
  music OUT.wav [--seconds S] [--seed N]
      the "music-like" signal: steady 5, 10 and 15 kHz tones (-20 dBFS each), a 110 Hz tone,
      drum-like bursts (decaying 60 Hz sine + short noise click) at irregular times (so the
      cross-correlation has one clear peak), 48 kHz mono float.
  stamp FIFO OUT.json
      reads GStreamer's raw F32 output from FIFO (a tee branch ending in `fdsink sync=true`,
      which, like an audio sink, releases every buffer at its running time + the pipeline
      latency, i.e. the jitter buffer's latency) and writes the wall-clock time (ns) and
      cumulative sample count of every read: when GStreamer plays each sample ("lag").
  analyze ...   one row -> JSON (see analyze())
  field ROW.json KEY   prints one value of a row (used for the adaptive mean delay)
  report ...    all rows -> Markdown tables

How a row is measured (analyze):
  * alignment: the recording (searched from the instant the input was captured to 2 s
    after; for the music: both with the steady tones notched out,
    which would make the correlation periodic) is cross-correlated (FFT) with the 48 kHz input; the peak is
    the offset L of the input in the file. The file is cut to [L, L + len(input)) (zeros
    where it ends early): the common span.
  * lag ms: wall-clock instant at which the file's sample L was played minus the instant
    the sender captured input sample 0 (patchcord-send's capture_start_unix_ns). The
    file's time zero is patchcord-recv's output_start_unix_ns (virtual device), or for
    GStreamer the median over its output reads of (read time - samples before / 48000).
    This is the measured end-to-end delay of both receivers on one scale.
  * lag range ms (steps): the input is cut in 0.25 s blocks; each is found again in the
    recording (+-150 ms search, normalised correlation > 0.7); range = max - min of their
    lags (median of 3 neighbours, so one block matched wrongly inside concealment does
    not count), steps = jumps of more than 0.5 ms between consecutive blocks. A fixed-delay
    receiver on one machine should show 0 (no clock drift here); slips, skipped or
    inserted audio, and the adaptive delay's movements show up here.
  * PESQ-WB: the aligned span resampled 48 -> 16 kHz (polyphase, scipy) against the
    16 kHz reference (sox from the same input), `pesq` mode 'wb'.
  * delay mean / p99 (patchcord): per-second JSON records of --stats-json, the stream's
    `delay_ms` (playout delay above the fastest packets), non-null values only; for
    GStreamer: its rtpjitterbuffer latency setting.
  * counters (patchcord): the final summary record: concealment_events, interruptions,
    late, concealed_samples (ms), missing, recovered_fec, underruns, discarded.
  * music: per 50 ms window (2400 samples, Hann, zero-padded FFT) the peak level within
    +-1.5 % of 5, 10 and 15 kHz, in the recording and in the input; wobble = max - min over
    the steady part (first 1 s and last 0.5 s left out) of (recording - input) dB, so the
    signal's own transients cancel. "disturbed" = windows where any tone is more than
    3 dB off its median difference (comparable between all receivers: it sees PLC, gaps,
    skips). "pitch" = largest deviation of the 10 kHz peak frequency (parabolic
    interpolation) from 10 kHz, in per mille: the adaptive rate control's pitch change.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

SR = 48000


def read_wav(path):
    import soundfile as sf
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    return x.mean(axis=1), sr


def write_wav(path, x, sr=SR):
    import soundfile as sf
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")


# ---------------------------------------------------------------- signals
def cmd_music(a):
    rng = np.random.default_rng(a.seed)
    n = int(a.seconds * SR)
    t = np.arange(n) / SR
    x = 0.1 * (np.sin(2 * np.pi * 5000 * t) + np.sin(2 * np.pi * 10000 * t + 1.0)
               + np.sin(2 * np.pi * 15000 * t + 2.0)) + 0.15 * np.sin(2 * np.pi * 110 * t)
    # drum-like bursts on a 0.5 s grid with +-60 ms random offsets, clicks on the off-beats
    kick_len = int(0.25 * SR)
    kt = np.arange(kick_len) / SR
    kick = 0.3 * np.sin(2 * np.pi * (60 * kt + 40 * (1 - np.exp(-kt / 0.02)))) * np.exp(-kt / 0.06)
    click_len = int(0.004 * SR)
    for k in np.arange(0.5, a.seconds - 0.5, 0.5):
        s = int((k + rng.uniform(-0.06, 0.06)) * SR)
        x[s:s + kick_len] += kick[: max(0, min(kick_len, n - s))]
        c = int((k + 0.25 + rng.uniform(-0.04, 0.04)) * SR)
        burst = rng.uniform(-0.25, 0.25, click_len) * np.exp(-np.arange(click_len) / (0.001 * SR))
        x[c:c + click_len] += burst[: max(0, min(click_len, n - c))]
    ramp = int(0.01 * SR)
    x[:ramp] *= np.linspace(0, 1, ramp)
    x[-ramp:] *= np.linspace(1, 0, ramp)
    pad = np.zeros(int(0.3 * SR))
    write_wav(a.out, np.concatenate([pad, x, pad]))


# ---------------------------------------------------------------- GStreamer output stamps
def cmd_stamp(a):
    fd = os.open(a.fifo, os.O_RDONLY)
    stamps = []
    total = 0
    pend = 0
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            break
        now = time.time_ns()
        total += len(b)
        stamps.append((now, (total - len(b)) // 4))
    os.close(fd)
    with open(a.out, "w") as f:
        json.dump({"stamps": stamps, "samples": total // 4}, f)


# ---------------------------------------------------------------- analysis
def align(rec, ref, lo=-int(0.5 * SR), hi=int(8.0 * SR)):
    from scipy.signal import correlate
    c = correlate(rec, ref, mode="full", method="fft")
    lags = np.arange(-len(ref) + 1, len(rec))
    ok = (lags >= lo) & (lags <= hi)
    c = np.where(ok, c, -np.inf)
    i = int(np.argmax(c))
    lag = int(lags[i])
    norm = math.sqrt(float(np.dot(ref, ref)) * max(1e-12, float(np.dot(rec, rec))))
    return lag, float(c[i]) / norm if norm > 0 else 0.0


def notch_tones(x):
    """the music signal without its steady tones (they make the correlation ambiguous)"""
    from scipy.signal import iirnotch, filtfilt
    for f in (110, 5000, 10000, 15000):
        b, a = iirnotch(f, 8, SR)
        x = filtfilt(b, a, x)
    return x


def block_lags(ref, rec, lag, block=SR // 4, search=int(0.15 * SR)):
    """lag (samples, relative to the global one) of every 0.25 s block of the input that
    has signal and matches (normalised correlation > 0.7): shows slips and delay changes"""
    from scipy.signal import correlate
    out = []
    for s in range(0, len(ref) - block + 1, block):
        r = ref[s:s + block]
        er = float(np.dot(r, r))
        if er / block < 1e-5:  # below -50 dBFS: silence
            continue
        a0 = s + lag - search
        if a0 < 0 or s + lag + block + search > len(rec):
            continue
        seg = rec[a0:s + lag + block + search]
        c = correlate(seg, r, mode="valid", method="fft")
        i = int(np.argmax(c))
        e = float(np.dot(seg[i:i + block], seg[i:i + block]))
        if e > 0 and c[i] / math.sqrt(er * e) > 0.7:
            out.append((round(s / SR, 2), i - search))
    return out


def cut(rec, lag, n):
    out = np.zeros(n)
    s0 = max(0, lag)
    d0 = s0 - lag
    m = max(0, min(n - d0, len(rec) - s0))
    out[d0:d0 + m] = rec[s0:s0 + m]
    return out, m


def json_lines(path):
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def tone_levels(x, freqs, win=2400, nfft=8192):
    """per-window peak level (dB) near each freq, and the interpolated peak frequency"""
    w = np.hanning(win)
    nw = len(x) // win
    lev = np.full((nw, len(freqs)), -200.0)
    pk = np.full((nw, len(freqs)), np.nan)
    binhz = SR / nfft
    for k in range(nw):
        spec = np.abs(np.fft.rfft(x[k * win:(k + 1) * win] * w, nfft))
        for j, f in enumerate(freqs):
            lo, hi = int(f * 0.985 / binhz), int(math.ceil(f * 1.015 / binhz))
            seg = spec[lo:hi + 1]
            i = int(np.argmax(seg))
            lev[k, j] = 20 * math.log10(max(seg[i], 1e-10) * 2 / w.sum())
            if 0 < i < len(seg) - 1:
                y0, y1, y2 = (math.log(max(v, 1e-12)) for v in seg[i - 1:i + 2])
                den = y0 - 2 * y1 + y2
                off = 0.5 * (y0 - y2) / den if den != 0 else 0.0
                pk[k, j] = (lo + i + off) * binhz
    return lev, pk


def cmd_analyze(a):
    row = json.loads(a.meta)
    row.update(status=a.status)
    try:
        if not a.status.startswith("ok"):
            raise RuntimeError(a.status)
        ref, _ = read_wav(a.ref48)
        if not os.path.exists(a.rec) or os.path.getsize(a.rec) < 1000:
            raise RuntimeError("no recording")
        rec, sr = read_wav(a.rec)
        if sr != SR:
            raise RuntimeError(f"recording at {sr} Hz")
        row["rec_seconds"] = round(len(rec) / SR, 3)
        if a.signal == "music":
            rf, rc = notch_tones(ref), notch_tones(rec)
        else:
            rf, rc = ref, rec
        # wall-clock anchors: the sender's capture start and the recording's time zero
        send = json_lines(a.send_stats)
        cap0 = next((r.get("capture_start_unix_ns") for r in reversed(send)
                     if r.get("capture_start_unix_ns")), None)
        file0 = None
        if a.kind == "patchcord":
            recv = json_lines(a.recv_stats)
            file0 = next((r.get("output_start_unix_ns") for r in recv
                          if r.get("output_start_unix_ns")), None)
        elif a.stamps and os.path.exists(a.stamps):
            st = json.load(open(a.stamps))["stamps"]
            if st:
                file0 = float(np.median([t - s * 1e9 / SR for t, s in st]))
        # search the lag where it can be: the input cannot play before it was captured, nor
        # more than 2 s after (a music-like signal under a varying rate has side peaks)
        lo, hi = -int(0.5 * SR), int(8.0 * SR)
        if cap0 and file0:
            base = int((cap0 - file0) * SR / 1e9)
            lo, hi = base, base + 2 * SR
        lag, corr = align(rc, rf, lo, hi)
        bl = block_lags(rf, rc, lag)
        if bl:
            v = [x for _, x in bl]
            if len(v) >= 3:  # median of 3: one block matched wrongly (inside PLC) is no step
                v = [int(np.median(v[max(0, i - 1):i + 2])) for i in range(len(v))]
            row["block_lags_samples"] = bl
            row["lag_range_ms"] = round((max(v) - min(v)) / 48.0, 2)
            row["lag_steps"] = int(sum(1 for x, y in zip(v, v[1:]) if abs(x - y) > 24))
        row["file_offset_samples"] = lag
        row["xcorr"] = round(corr, 4)
        seg, have = cut(rec, lag, len(ref))
        row["covered_pct"] = round(100.0 * have / len(ref), 2)

        # wall-clock lag (capture of input sample 0 -> playout of its copy)
        if cap0 and file0:
            row["lag_ms"] = round((file0 + lag * 1e9 / SR - cap0) / 1e6, 1)

        # PESQ-WB
        try:
            from pesq import pesq
            from scipy.signal import resample_poly
            r16, sr16 = read_wav(a.ref16)
            d16 = resample_poly(seg, 1, 3)
            n = min(len(r16), len(d16))
            row["pesq_wb"] = round(float(pesq(16000, r16[:n], d16[:n], "wb")), 3)
        except Exception as e:  # PESQ refuses some non-speech input
            row["pesq_wb"] = None
            row["pesq_error"] = str(e)[:120]

        if a.signal == "music":
            freqs = [5000, 10000, 15000]
            lr, pr = tone_levels(seg, freqs)
            li, _ = tone_levels(ref, freqs)
            w0, w1 = int(1.3 / 0.05), len(lr) - int(0.8 / 0.05)  # 0.3 s pad + 1 s; 0.3 + 0.5 s
            d = lr[w0:w1] - li[w0:w1]
            row["wobble_db"] = [round(float(d[:, j].max() - d[:, j].min()), 2) for j in range(3)]
            row["input_wobble_db"] = [round(float(li[w0:w1, j].max() - li[w0:w1, j].min()), 2)
                                      for j in range(3)]
            med = np.median(d, axis=0)
            row["disturbed_windows"] = int(np.sum(np.any(np.abs(d - med) > 3.0, axis=1)))
            row["windows"] = int(len(d))
            quiet = ~np.any(np.abs(d - med) > 3.0, axis=1)
            p = pr[w0:w1, 1][quiet]
            p = p[np.isfinite(p)]
            if len(p):
                row["pitch_dev_permille"] = round(float(np.max(np.abs(p / 10000 - 1))) * 1000, 2)

        if a.kind == "patchcord":
            recv = json_lines(a.recv_stats)
            per = [r for r in recv if not r.get("final")]
            fin = next((r for r in reversed(recv) if r.get("final")), recv[-1] if recv else {})
            dl, lat = [], []
            for r in per:
                s = (r.get("streams") or [{}])[0]
                v = s.get("delay_ms", r.get("delay_ms"))
                if v is not None:
                    dl.append(v)
                v = s.get("latency_ms")
                if v is not None:
                    lat.append(v)
            if dl:
                row["delay_mean_ms"] = round(float(np.mean(dl)), 1)
                row["delay_p99_ms"] = round(float(np.percentile(dl, 99)), 1)
                row["delay_samples"] = len(dl)
            if lat:
                row["reported_latency_mean_ms"] = round(float(np.mean(lat)), 1)
            for k in ("delay_corrections", "skipped_samples", "inserted_samples", "tsm_operations",
                      "tsm_removed_samples", "tsm_inserted_samples", "ended",
                      "concealment_events", "interruptions", "late", "concealed_samples",
                      "missing", "lost", "recovered_fec", "underruns", "discarded", "resyncs",
                      "packets_received", "played", "xruns"):
                row[k] = fin.get(k)
            if fin.get("concealed_samples") is not None:
                row["concealed_ms"] = round(fin["concealed_samples"] / 48.0, 1)
        else:
            row["delay_mean_ms"] = row.get("setting_ms")
        imp = json_lines(a.impair_stats)
        fi = next((r for r in reversed(imp) if r.get("final")), None)
        if fi:
            row["impair_dropped"] = sum(s.get("dropped", 0) for s in fi.get("streams", []))
            row["impair_received"] = fi.get("rtp")
    except Exception as e:
        if row["status"].startswith("ok"):
            row["status"] = f"failed: analysis: {e}"[:200]
    with open(a.out, "w") as f:
        json.dump(row, f)
    print(json.dumps(row))


def cmd_field(a):
    v = json.load(open(a.row)).get(a.key)
    print("" if v is None else v)


# ---------------------------------------------------------------- report
def fmt(v, nd=None):
    if v is None:
        return "–"
    if isinstance(v, float) and nd is not None:
        return f"{v:.{nd}f}"
    return str(v)


def cmd_report(a):
    rows = []
    with open(a.rows) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    out = []
    for sig in [s for s in ("speech", "music") if any(r["signal"] == s for r in rows)]:
        rs = [r for r in rows if r["signal"] == sig]
        out.append(f"\n### {sig}\n")
        if sig == "speech":
            out.append("| profile | receiver | setting | PESQ-WB | delay mean ms | delay p99 ms | lag ms "
                       "| lag range ms (steps) | conceal ev | interrupt | late | concealed ms | missing "
                       "| FEC rec | slips or splices | status |")
            out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        else:
            out.append("| profile | receiver | setting | PESQ-WB* | delay mean ms | delay p99 ms | lag ms "
                       "| lag range ms (steps) | wobble 5k/10k/15k dB | disturbed /windows | pitch ‰ "
                       "| conceal ev | interrupt | late | concealed ms | slips or splices | status |")
            out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        notes = []
        for prof in dict.fromkeys(r["profile"] for r in rs):
            pr = [r for r in rs if r["profile"] == prof]
            for r in pr:
                ok = r["status"].startswith("ok")
                pc = r["kind"] == "patchcord"
                cells = [prof, r["receiver"], r["setting"], fmt(r.get("pesq_wb"), 2),
                         fmt(r.get("delay_mean_ms")), fmt(r.get("delay_p99_ms")) if pc else "n/a",
                         fmt(r.get("lag_ms")),
                         f"{r['lag_range_ms']} ({r['lag_steps']})" if "lag_range_ms" in r else "–"]
                if sig == "music":
                    wb = r.get("wobble_db")
                    cells += ["/".join(f"{v:.1f}" for v in wb) if wb else "–",
                              f"{r['disturbed_windows']}/{r['windows']}" if "windows" in r else "–",
                              fmt(r.get("pitch_dev_permille"))]
                if pc:
                    cells += [fmt(r.get("concealment_events")), fmt(r.get("interruptions")),
                              fmt(r.get("late")), fmt(r.get("concealed_ms"))]
                    if sig == "speech":
                        cells += [fmt(r.get("missing")), fmt(r.get("recovered_fec"))]
                    # the fixed-delay keeper's slips (builds before issue 8), or the adaptive
                    # delay's pitch-period splices (after; fixed mode never slips)
                    dc, ts = r.get("delay_corrections"), r.get("tsm_operations")
                    if ts is not None:
                        cells.append(f"{ts} splices (−{r.get('tsm_removed_samples')}/+{r.get('tsm_inserted_samples')} smp)"
                                     if ts else "0")
                    else:
                        cells.append("–" if dc is None else
                                     f"{dc} slips (−{r.get('skipped_samples')}/+{r.get('inserted_samples')} smp)" if dc else "0")
                else:
                    cells += ["n/a"] * (7 if sig == "speech" else 5)
                cells.append("ok" if ok else r["status"].replace("|", "/"))
                out.append("| " + " | ".join(cells) + " |")
            # best GStreamer setting: smallest swept latency within 0.05 PESQ of the ceiling
            ceil = next((r for r in pr if r["receiver"] == "gst ceiling"), None)
            sweep = sorted([r for r in pr if r["receiver"] == "gst sweep" and r.get("pesq_wb") is not None],
                           key=lambda r: r["setting_ms"])
            if ceil and ceil.get("pesq_wb") is not None:
                best = next((r for r in sweep if r["pesq_wb"] >= ceil["pesq_wb"] - 0.05), None)
                notes.append(f"- {prof}: GStreamer ceiling PESQ {ceil['pesq_wb']:.2f}; best setting "
                             + (f"latency={best['setting_ms']} ms (PESQ {best['pesq_wb']:.2f}, lag {fmt(best.get('lag_ms'))} ms)"
                                if best else "none of the swept latencies within 0.05"))
        if sig == "music":
            notes.append("- *PESQ on a non-speech signal is indicative only.")
        out.append("")
        out += notes
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(a.md, "a") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    m = sp.add_parser("music"); m.add_argument("out"); m.add_argument("--seconds", type=float, default=15)
    m.add_argument("--seed", type=int, default=1); m.set_defaults(f=cmd_music)
    s = sp.add_parser("stamp"); s.add_argument("fifo"); s.add_argument("out"); s.set_defaults(f=cmd_stamp)
    an = sp.add_parser("analyze")
    for k in ("signal", "kind", "ref48", "ref16", "rec", "meta", "status", "out"):
        an.add_argument("--" + k.replace("_", "-"), required=True)
    for k in ("recv-stats", "send-stats", "impair-stats", "stamps"):
        an.add_argument("--" + k, default=None)
    an.set_defaults(f=cmd_analyze)
    fl = sp.add_parser("field"); fl.add_argument("row"); fl.add_argument("key"); fl.set_defaults(f=cmd_field)
    r = sp.add_parser("report"); r.add_argument("--rows", required=True); r.add_argument("--md", required=True)
    r.set_defaults(f=cmd_report)
    a = p.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
