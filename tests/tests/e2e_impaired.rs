//! End-to-end across an impaired path: the real sender and receiver binaries through the
//! project's UDP proxy (`patchcord-impair`) with 5 % loss and 20 ms jitter. The received
//! audio must be continuous, and the receiver's counters must equal the proxy's own counts.

use patchcord_tests::*;

/// The audio between the first and the last sound is continuous: no run of digital
/// silence longer than 10 ms (concealment continues a tone; it does not drop to zero).
fn assert_continuous(samples: &[f32]) {
    let first = samples
        .iter()
        .position(|s| s.abs() > 0.01)
        .expect("no audio received");
    let last = samples.iter().rposition(|s| s.abs() > 0.01).unwrap();
    assert!(
        last - first > 48_000 * 6,
        "only {} s of audio",
        (last - first) / 48_000
    );
    let mut run = 0usize;
    let mut longest = 0usize;
    for s in &samples[first..last] {
        if s.abs() < 1e-4 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    assert!(
        longest <= 480,
        "a gap of {longest} silent samples in the received audio"
    );
}

#[test]
fn loss_and_jitter_through_the_proxy_counters_match_the_proxy() {
    let _serial = serial();
    let run = run_impaired(&scratch("impaired_plc"), &Impairment::default(), &[], &[]);
    assert_continuous(&run.samples);
    assert_counters_match_proxy(&run);
}

#[test]
fn redundancy_recovers_the_proxys_losses() {
    let _serial = serial();
    let run = run_impaired(
        &scratch("impaired_red"),
        &Impairment::default(),
        &[
            "--application",
            "lowdelay",
            "--redundancy",
            "2",
            "--bitrate",
            "64000",
        ],
        &[],
    );
    assert_continuous(&run.samples);
    let (r, p) = (&run.recv, &run.proxy);
    let dropped = seqs(&p["dropped_seqs"]).len() as u64;
    let recovered = r["recovered_red"].as_u64().unwrap();
    eprintln!("proxy dropped {dropped}, receiver recovered {recovered} by RED: {r}");
    // 5 % random loss: double losses within 3 packets are rare; the adaptive buffer makes
    // room for the copies after the first losses
    assert!(
        recovered * 10 >= dropped * 7,
        "recovered {recovered} of {dropped}"
    );
}
