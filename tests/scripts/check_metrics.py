#!/usr/bin/env python3
"""Read a patchcord /metrics scrape with Prometheus' own Python parser
(prometheus_client.parser) and check it against the /stats.json record of the same second:
every expected series is there, with the record's value. Exits non-zero with a message on
any failure (also when prometheus_client is missing: scripts/setup.sh installs it).

usage: check_metrics.py METRICS.txt STATS.json
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = open(sys.argv[1]).read()
    stats = json.load(open(sys.argv[2]))
    samples = {}
    kinds = {}
    for fam in text_string_to_metric_families(text):
        kinds[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    failures = []

    def expect(name, labels, want, kind):
        key = (name + ("_total" if kind == "counter" else ""), tuple(sorted(labels.items())))
        fam = name
        if kinds.get(fam) != kind:
            failures.append(f"{fam}: type {kinds.get(fam)}, expected {kind}")
        got = samples.get(key)
        if got is None:
            failures.append(f"missing series {key[0]}{dict(key[1])}")
        elif not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            failures.append(f"{key[0]}{dict(key[1])} = {got}, stats say {want}")

    hexs = lambda n: f"{n:08x}"
    checked = 0
    if stats["program"] == "patchcord-recv":
        for s in stats["streams"]:
            labels = {"ssrc": hexs(s["ssrc"]), "source": s["source"] or ""}
            p = "patchcord_recv_stream_"
            for name, want, kind in [
                ("packets_received", s["packets_received"], "counter"),
                ("lost", s["lost"], "counter"),
                ("late", s["late"], "counter"),
                ("concealed_seconds", s["concealed_ms"] / 1e3, "counter"),
                ("interruptions", s["interruptions"], "counter"),
                ("clipped_samples", s["clipped_samples"], "counter"),
                ("jitter_seconds", s["jitter_ms"] / 1e3, "gauge"),
                ("target_delay_seconds", s["target_delay_ms"] / 1e3, "gauge"),
                ("drift_ppm", s["drift_ppm"], "gauge"),
                ("peak_dbfs", s["peak_dbfs"], "gauge"),
                ("rms_dbfs", s["rms_dbfs"], "gauge"),
            ] + ([("delay_seconds", s["delay_ms"] / 1e3, "gauge")] if s["delay_ms"] is not None else []) \
              + ([("latency_seconds", s["latency_ms"] / 1e3, "gauge")] if s["latency_ms"] is not None else []):
                expect(p + name, labels, want, kind)
                checked += 1
        for name, want, kind in [
            ("active_streams", stats["active_streams"], "gauge"),
            ("packets_received", stats["packets_received"], "counter"),
            ("lost", stats["lost"], "counter"),
            ("concealed_seconds", stats["concealed_ms"] / 1e3, "counter"),
            ("xruns", stats["xruns"], "counter"),
            ("callback_p99_ratio", stats["callback_p99"], "gauge"),
            ("mix_peak_dbfs", stats["mix_peak_dbfs"], "gauge"),
            ("mix_rms_dbfs", stats["mix_rms_dbfs"], "gauge"),
            ("mix_clipped_samples", stats["clipped_samples"], "counter"),
        ]:
            expect("patchcord_recv_" + name, {}, want, kind)
            checked += 1
    else:
        labels = {"ssrc": hexs(stats["ssrc"])}
        for name, want, kind in [
            ("packets_sent", stats["packets_sent"], "counter"),
            ("bytes_sent", stats["bytes_sent"], "counter"),
            ("bitrate_kbps", stats["send_kbps"], "gauge"),
            ("peak_dbfs", stats["peak_dbfs"], "gauge"),
            ("rms_dbfs", stats["rms_dbfs"], "gauge"),
            ("clipped_samples", stats["clipped_samples"], "counter"),
        ]:
            expect("patchcord_send_" + name, labels, want, kind)
            checked += 1
        for r in stats["receivers"]:
            rl = dict(labels, receiver_ssrc=hexs(r["ssrc"]), receiver=r["address"])
            expect("patchcord_send_receiver_fraction_lost_ratio", rl, r["fraction_lost_pct"] / 100, "gauge")
            expect("patchcord_send_receiver_jitter_seconds", rl, r["jitter_ms"] / 1e3, "gauge")
            checked += 2
            if r["rtt_ms"] is not None:
                expect("patchcord_send_receiver_rtt_seconds", rl, r["rtt_ms"] / 1e3, "gauge")
                checked += 1
    prefix = "patchcord_recv_" if stats["program"] == "patchcord-recv" else "patchcord_send_"
    for name in ["http_refused", "http_timeouts", "http_bad_requests"]:
        expect(prefix + name, {}, stats[name], "counter")
        checked += 1
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print(f"OK: {checked} series match the stats ({len(samples)} samples parsed)")


if __name__ == "__main__":
    main()
