//! The impairment model: determinism, statistics, accounting, profile syntax.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use patchcord_netsim::{
    named_profile, profile_names, Decision, Delivery, Fate, ImpairStats, Impairment, Jitter, Loss, Profile,
    ReorderExtra,
};

const MS: i64 = 1_000_000;

struct Run {
    decisions: Vec<Decision>,
    deliveries: Vec<Delivery>,
    stats: ImpairStats,
}

/// Submit `n` packets (ids 0..n) every `interval` ns, polling as time passes, then drain,
/// checking the accounting identity at every step.
fn run(profile: &Profile, seed: u64, n: u64, interval: i64) -> Run {
    let mut imp = Impairment::new(profile.clone(), seed);
    let mut decisions = Vec::with_capacity(n as usize);
    let mut deliveries = Vec::new();
    let check = |s: &ImpairStats| {
        assert_eq!(
            s.submitted + s.duplicated,
            s.dropped + s.delivered + s.pending,
            "{s:?}"
        );
    };
    for i in 0..n {
        let now = 1_000 * MS + i as i64 * interval;
        while let Some(d) = imp.poll_delivery(now) {
            deliveries.push(d);
        }
        decisions.push(imp.submit_detailed(i, now));
        if i % 997 == 0 {
            check(&imp.stats());
        }
    }
    while let Some(t) = imp.next_delivery() {
        while let Some(d) = imp.poll_delivery(t) {
            deliveries.push(d);
        }
    }
    assert_eq!(imp.poll(i64::MAX), None);
    let stats = imp.stats();
    check(&stats);
    Run {
        decisions,
        deliveries,
        stats,
    }
}

fn p(spec: &str) -> Profile {
    match Profile::parse(spec) {
        Ok(p) => p,
        Err(e) => panic!("{spec}: {e}"),
    }
}

fn drop_pattern(r: &Run) -> Vec<bool> {
    r.decisions.iter().map(|d| d.fate == Fate::Dropped).collect()
}

/// Lengths of the runs of consecutive drops.
fn bursts(dropped: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut len = 0;
    for &d in dropped {
        if d {
            len += 1;
        } else if len > 0 {
            out.push(len);
            len = 0;
        }
    }
    if len > 0 {
        out.push(len);
    }
    out
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Delays (ms) of the originals.
fn delays_ms(r: &Run) -> Vec<f64> {
    r.deliveries
        .iter()
        .filter(|d| d.copy == 0)
        .map(|d| (d.at_ns - d.submitted_ns) as f64 / MS as f64)
        .collect()
}

// ---------------------------------------------------------------- determinism

#[test]
fn same_seed_same_everything_different_seed_differs() {
    for spec in [
        "mixed",
        "jitter50,fifo=off,reorder=3%,dup=2%:1ms",
        "bursty,jitter=2ms:uniform",
    ] {
        let prof = p(spec);
        let a = run(&prof, 11, 20_000, 20 * MS);
        let b = run(&prof, 11, 20_000, 20 * MS);
        assert_eq!(a.decisions, b.decisions, "{spec}");
        assert_eq!(a.deliveries, b.deliveries, "{spec}");
        assert_eq!(a.stats, b.stats, "{spec}");
        let c = run(&prof, 12, 20_000, 20 * MS);
        assert_ne!(
            a.decisions, c.decisions,
            "{spec}: seeds 11 and 12 gave the same decisions"
        );
    }
}

/// FNV-1a over every decision: pins the exact output for a seed, so a change of the
/// model, the random streams or the arithmetic (or a machine that computes differently)
/// fails here rather than silently changing every simulation.
#[test]
fn golden_digest_is_stable_across_machines() {
    let r = run(
        &p("mixed,fifo=off,jitter=7ms:uniform,spike=1%:20ms"),
        2024,
        50_000,
        5 * MS,
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: i64| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for d in &r.decisions {
        eat(match d.fate {
            Fate::Dropped => 0,
            Fate::Delivered { copies } => i64::from(copies),
        });
        eat(d.deliver_at_ns.unwrap_or(-1));
        eat(d.duplicate_at_ns.unwrap_or(-1));
    }
    assert_eq!(h, GOLDEN_DIGEST, "the model's output for a fixed seed changed");
}
const GOLDEN_DIGEST: u64 = 0xa140_a196_90bb_6013;

#[test]
fn aspects_draw_from_independent_streams() {
    // The same seed drops the same packets with or without jitter / duplication / reordering,
    // and gives the same jitter with or without loss.
    let a = run(&p("loss=5%"), 5, 20_000, 20 * MS);
    let b = run(
        &p("loss=5%,jitter=20ms,dup=3%,reorder=2%,spike=1%:30ms"),
        5,
        20_000,
        20 * MS,
    );
    assert_eq!(drop_pattern(&a), drop_pattern(&b));
    let c = run(&p("jitter=20ms,delay=60ms,fifo=off"), 5, 20_000, 20 * MS);
    let d = run(&p("jitter=20ms,delay=60ms,fifo=off,loss=20%"), 5, 20_000, 20 * MS);
    for (x, y) in c.decisions.iter().zip(&d.decisions) {
        if y.fate != Fate::Dropped {
            assert_eq!(x.deliver_at_ns, y.deliver_at_ns);
        }
    }
}

// ---------------------------------------------------------------- statistics

#[test]
fn random_loss_rate() {
    let r = run(&p("loss=5%"), 1, 200_000, 20 * MS);
    let rate = r.stats.dropped as f64 / r.stats.submitted as f64;
    assert!((rate - 0.05).abs() < 0.003, "loss rate {rate}");
    // Independent: bursts are short (mean run length 1/(1-p) = 1.053).
    let b = bursts(&drop_pattern(&r));
    let mean = b.iter().sum::<usize>() as f64 / b.len() as f64;
    assert!(mean < 1.1, "mean burst {mean}");
    for (name, want) in [("loss1", 0.01), ("loss20", 0.20)] {
        let r = run(&p(name), 2, 200_000, 20 * MS);
        let rate = r.stats.dropped as f64 / r.stats.submitted as f64;
        assert!((rate - want).abs() < 0.004, "{name}: loss rate {rate}");
    }
}

#[test]
fn gilbert_elliott_matches_stationary_loss_and_is_bursty() {
    // (spec, expected mean burst length when loss_in_bad = 100%, loss_in_good = 0%)
    for (spec, burst) in [
        ("ge=1%:25%", Some(4.0)),
        ("bursty", Some(3.0)),
        ("ge=2%:30%:80%:0.5%", None),
    ] {
        let prof = p(spec);
        let Loss::GilbertElliott {
            p_good_to_bad,
            p_bad_to_good,
            loss_in_bad,
            loss_in_good,
        } = prof.loss
        else {
            panic!("{spec} is not Gilbert-Elliott");
        };
        let pi_bad = p_good_to_bad / (p_good_to_bad + p_bad_to_good);
        let expected = pi_bad * loss_in_bad + (1.0 - pi_bad) * loss_in_good;
        assert!((prof.average_loss() - expected).abs() < 1e-12);
        let r = run(&prof, 3, 200_000, 20 * MS);
        let rate = r.stats.dropped as f64 / r.stats.submitted as f64;
        assert!(
            (rate - expected).abs() < 0.1 * expected,
            "{spec}: loss {rate}, stationary {expected}"
        );
        let b = bursts(&drop_pattern(&r));
        let mean = b.iter().sum::<usize>() as f64 / b.len() as f64;
        assert!(mean > 1.5, "{spec}: mean burst length {mean}");
        if let Some(want) = burst {
            assert!(
                (mean - want).abs() < 0.1 * want,
                "{spec}: mean burst {mean}, expected {want}"
            );
        }
    }
    assert!((p("bursty").average_loss() - 0.05).abs() < 1e-12);
}

#[test]
fn duplicate_rate_and_copies() {
    let r = run(&p("dup=3%:2ms"), 4, 200_000, 20 * MS);
    let rate = r.stats.duplicated as f64 / r.stats.submitted as f64;
    assert!((rate - 0.03).abs() < 0.002, "dup rate {rate}");
    for d in &r.decisions {
        match d.fate {
            Fate::Delivered { copies: 2 } => {
                assert_eq!(d.duplicate_at_ns, d.deliver_at_ns.map(|t| t + 2 * MS));
            }
            Fate::Delivered { copies: 1 } => assert_eq!(d.duplicate_at_ns, None),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        r.deliveries.iter().filter(|d| d.copy == 1).count() as u64,
        r.stats.duplicated
    );
    assert_eq!(r.stats.reordered, 0, "duplicates are not reorders");
}

#[test]
fn reordering() {
    let r = run(&p("reorder=2%"), 6, 200_000, 20 * MS);
    let s = r.stats;
    let rate = s.reorder_delayed as f64 / s.submitted as f64;
    assert!((rate - 0.02).abs() < 0.002, "reorder rate {rate}");
    // Held back 2 intervals (40 ms): overtaken by the next packet unless that one is held too.
    assert!(s.reordered > 0);
    assert!(s.reordered as f64 >= 0.95 * s.reorder_delayed as f64, "{s:?}");
    assert!(s.reordered <= s.reorder_delayed);
    for d in r.deliveries.iter().filter(|d| d.reordered) {
        assert!(r.decisions[d.id as usize].reorder_delayed);
        assert_eq!(d.at_ns - d.submitted_ns, 40 * MS);
    }
    // The extra follows the packet rate: 2 intervals of 5 ms = 10 ms.
    let r = run(&p("reorder=5%"), 6, 2_000, 5 * MS);
    for d in r
        .deliveries
        .iter()
        .filter(|d| r.decisions[d.id as usize].reorder_delayed && d.seq > 100)
    {
        assert_eq!(d.at_ns - d.submitted_ns, 10 * MS);
    }
    // Fixed extra.
    let r = run(&p("reorder=5%:7ms"), 6, 2_000, 5 * MS);
    assert!(r.stats.reordered > 0);
    assert!(matches!(
        p("reorder=5%:7ms").reorder.map(|x| x.extra),
        Some(ReorderExtra::Fixed(_))
    ));
}

#[test]
fn fifo_jitter_never_reorders_but_independent_jitter_does() {
    let fifo = run(&p("jitter20"), 7, 50_000, 20 * MS);
    assert_eq!(fifo.stats.reordered, 0);
    let seqs: Vec<u64> = fifo.deliveries.iter().map(|d| d.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "fifo delivered out of order"
    );
    let free = run(&p("jitter20,fifo=off"), 7, 50_000, 20 * MS);
    assert!(free.stats.reordered > 1_000, "{:?}", free.stats);
    // A fifo queue only ever delays more.
    for (a, b) in fifo.decisions.iter().zip(&free.decisions) {
        assert!(a.deliver_at_ns >= b.deliver_at_ns);
    }
}

#[test]
fn jitter_has_the_configured_spread() {
    // Normal, sd 10 ms, truncated at 3 sd: sd 9.866 ms, all within 100 ± 30 ms.
    let r = run(&p("delay=100ms,jitter=10ms,fifo=off"), 8, 200_000, 20 * MS);
    let d = delays_ms(&r);
    let (mean, sd) = mean_sd(&d);
    assert!((mean - 100.0).abs() < 0.2, "mean {mean}");
    assert!((sd - 9.866).abs() < 0.1, "sd {sd}");
    assert!(d.iter().all(|&x| (70.0..=130.0).contains(&x)));
    // Uniform ±10 ms: sd 10/√3.
    let r = run(&p("delay=50ms,jitter=10ms:uniform,fifo=off"), 8, 200_000, 20 * MS);
    let d = delays_ms(&r);
    let (mean, sd) = mean_sd(&d);
    assert!((mean - 50.0).abs() < 0.1, "mean {mean}");
    assert!((sd - 10.0 / 3f64.sqrt()).abs() < 0.06, "sd {sd}");
    assert!(d.iter().all(|&x| (40.0..=60.0).contains(&x)));
    assert!(d.iter().any(|&x| x < 40.5) && d.iter().any(|&x| x > 59.5));
    // Delays never go below zero.
    let r = run(&p("jitter=5ms,fifo=off"), 8, 20_000, 20 * MS);
    assert!(delays_ms(&r).iter().all(|&x| x >= 0.0));
    // Named jitter profiles: sd of the original delay spread at 20 ms packets.
    for (name, sd_ms) in [("jitter5", 5.0), ("jitter20", 20.0), ("jitter50", 50.0)] {
        let mut prof = p(name);
        prof.fifo = false;
        prof.spike = None;
        let r = run(&prof, 9, 100_000, 20 * MS);
        let (_, sd) = mean_sd(&delays_ms(&r));
        assert!((sd - 0.9866 * sd_ms).abs() < 0.02 * sd_ms, "{name}: sd {sd}");
        assert!(matches!(p(name).jitter, Jitter::Normal { .. }));
    }
}

#[test]
fn spikes_are_present_and_heavy_tailed() {
    let r = run(&p("delay=10ms,spike=1%:50ms,fifo=off"), 10, 200_000, 20 * MS);
    let rate = r.stats.spiked as f64 / r.stats.submitted as f64;
    assert!((rate - 0.01).abs() < 0.0015, "spike rate {rate}");
    let extra: Vec<f64> = r
        .deliveries
        .iter()
        .filter(|d| r.decisions[d.id as usize].spiked)
        .map(|d| (d.at_ns - d.submitted_ns) as f64 / MS as f64 - 10.0)
        .collect();
    assert_eq!(extra.len() as u64, r.stats.spiked);
    assert!(
        extra.iter().all(|&x| (50.0..=1250.0).contains(&x)),
        "spike outside [scale, 25 scale]"
    );
    // Pareto(shape 1.5): P(X > k·scale) = k^-1.5.
    let n = extra.len() as f64;
    for k in [2.0f64, 4.0, 8.0] {
        let frac = extra.iter().filter(|&&x| x > 50.0 * k).count() as f64 / n;
        let want = k.powf(-1.5);
        assert!(
            (frac - want).abs() < 0.25 * want + 0.01,
            "P(X > {k} scale) = {frac}, want {want}"
        );
    }
    // Heavy tail: far more mass beyond 8× the scale than an exponential with the same mean
    // (3 × scale) would have: exp(-(8-1)/2) = 3%.
    let beyond = extra.iter().filter(|&&x| x > 400.0).count() as f64 / n;
    assert!(beyond > 0.035, "tail {beyond}");
    // Non-spiked packets: exactly the base delay.
    assert!(r
        .deliveries
        .iter()
        .filter(|d| !r.decisions[d.id as usize].spiked)
        .all(|d| d.at_ns - d.submitted_ns == 10 * MS));
    // The named jitter profiles have spikes.
    for name in ["jitter20", "jitter50"] {
        assert!(p(name).spike.is_some(), "{name}");
        let r = run(&p(name), 11, 20_000, 20 * MS);
        assert!(r.stats.spiked > 0, "{name}");
    }
    assert!(p("jitter5").spike.is_none());
}

// ---------------------------------------------------------------- accounting

#[test]
fn stats_and_reports_agree_with_what_happened() {
    for spec in [
        "clean",
        "loss20",
        "bursty",
        "jitter50",
        "reorder",
        "dup",
        "mixed",
        "mixed,fifo=off,dup=10%:3ms",
    ] {
        let r = run(&p(spec), 12, 30_000, 10 * MS);
        let s = r.stats;
        assert_eq!(s.submitted, 30_000);
        assert_eq!(s.pending, 0);
        assert_eq!(
            s.submitted,
            s.dropped + s.delivered - s.duplicated,
            "{spec}: {s:?}"
        );
        assert_eq!(
            s.dropped,
            r.decisions.iter().filter(|d| d.fate == Fate::Dropped).count() as u64
        );
        assert_eq!(
            s.duplicated,
            r.decisions
                .iter()
                .filter(|d| d.fate == Fate::Delivered { copies: 2 })
                .count() as u64
        );
        assert_eq!(s.delivered, r.deliveries.len() as u64);
        assert_eq!(
            s.reordered,
            r.deliveries.iter().filter(|d| d.reordered).count() as u64
        );
        assert_eq!(s.spiked, r.decisions.iter().filter(|d| d.spiked).count() as u64);
        assert_eq!(
            s.reorder_delayed,
            r.decisions.iter().filter(|d| d.reorder_delayed).count() as u64
        );
        assert!(s.reordered <= s.delivered);

        // Every delivery is exactly where the decision said, dropped ids never come out.
        let mut by_id: HashMap<u64, Vec<&Delivery>> = HashMap::new();
        for d in &r.deliveries {
            by_id.entry(d.id).or_default().push(d);
        }
        for (i, dec) in r.decisions.iter().enumerate() {
            let got = by_id.get(&(i as u64)).cloned().unwrap_or_default();
            match dec.fate {
                Fate::Dropped => assert!(got.is_empty()),
                Fate::Delivered { copies } => {
                    assert_eq!(got.len(), copies as usize);
                    assert_eq!(Some(got[0].at_ns), dec.deliver_at_ns);
                    assert_eq!(got[0].copy, 0);
                    if copies == 2 {
                        assert_eq!(Some(got[1].at_ns), dec.duplicate_at_ns);
                        assert_eq!(got[1].copy, 1);
                    }
                }
            }
        }
        // Deliveries come out in time order.
        assert!(r.deliveries.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        // "reordered" = an original delivered after the original of a later-submitted packet.
        let mut max_seq = None::<u64>;
        for d in r.deliveries.iter().filter(|d| d.copy == 0) {
            assert_eq!(d.reordered, max_seq.is_some_and(|m| m > d.seq), "{spec}");
            max_seq = Some(max_seq.map_or(d.seq, |m| m.max(d.seq)));
        }
        // Delay statistics.
        let delays: Vec<i64> = r.deliveries.iter().map(|d| d.at_ns - d.submitted_ns).collect();
        if let Some(&max) = delays.iter().max() {
            assert_eq!(s.max_added_delay_ns, max);
            let mean = delays.iter().map(|&x| x as f64).sum::<f64>() / delays.len() as f64;
            assert!((s.mean_added_delay_ns - mean).abs() < 1.0);
        }
        if spec == "clean" {
            assert_eq!(
                (s.dropped, s.duplicated, s.reordered, s.max_added_delay_ns),
                (0, 0, 0, 0)
            );
        }
    }
}

#[test]
fn bursts_of_submissions_at_one_instant() {
    // Many packets at the same time, then polled once: nothing lost, order by time then seq.
    let mut imp = Impairment::new(p("dup=50%,jitter=1ms:uniform,delay=1ms"), 13);
    let mut copies = 0;
    for id in 0..1_000 {
        if let Fate::Delivered { copies: c } = imp.submit(id, 0) {
            copies += u64::from(c);
        }
    }
    let out: Vec<(u64, i64)> = std::iter::from_fn(|| imp.poll(10 * MS)).collect();
    assert_eq!(out.len() as u64, copies);
    assert!(out.windows(2).all(|w| w[0].1 <= w[1].1));
    let ids: HashSet<u64> = out.iter().map(|x| x.0).collect();
    assert_eq!(ids.len(), 1_000);
}

// ---------------------------------------------------------------- profile syntax

#[test]
fn profiles_round_trip_through_text() {
    let specs = [
        "clean",
        "",
        "loss=5%",
        "loss=0.125",
        "burst=5%:3",
        "ge=1%:25%",
        "ge=0.02:0.3:0.8:0.005",
        "delay=2ms,jitter=20ms",
        "jitter=1500us:uniform,fifo=off",
        "spike=0.5%:80ms",
        "spike=1%:10ms:2.5:300ms",
        "reorder=2%",
        "reorder=2%:3",
        "reorder=1%:15ms",
        "dup=1%",
        "dup=1%:250us",
        "loss=5%,jitter=20ms,delay=2ms,dup=1%,reorder=2%,spike=0.5%:80ms",
        " jitter20 , loss = 2% ",
    ];
    for spec in specs {
        let prof = p(spec);
        let text = prof.to_string();
        assert_eq!(Profile::parse(&text).as_ref(), Ok(&prof), "{spec} -> {text}");
        assert_eq!(prof.validate(), Ok(()), "{spec}");
    }
    for name in profile_names() {
        let prof = p(name);
        assert_eq!(Profile::parse(&prof.to_string()), Ok(prof.clone()), "{name}");
    }
    assert_eq!(p("clean"), Profile::default());
    assert_eq!(p(""), Profile::default());
    assert_eq!(Profile::default().to_string(), "clean");
    assert_eq!(p("loss=5%"), p("loss=0.05"));
    assert_eq!(p("loss=5%").loss, Loss::Random { p: 0.05 });
    assert_eq!(p("delay=2ms").delay, Duration::from_millis(2));
    assert_eq!(
        p("jitter=20ms").jitter,
        Jitter::Normal {
            std_dev: Duration::from_millis(20)
        }
    );
    assert_eq!(p("jitter=0"), Profile::default());
    assert_eq!(p("jitter20,loss=2%").loss, Loss::Random { p: 0.02 });
    assert_eq!(p("jitter20,loss=2%").delay, Duration::from_millis(60));
    assert_eq!(p("dup=1%:2ms").to_string(), "dup=0.01:2ms");
    assert_eq!(
        p("loss=5%,jitter=20ms,delay=2ms,dup=1%,reorder=2%,spike=0.5%:80ms").to_string(),
        "loss=0.05,delay=2ms,jitter=20ms,spike=0.005:80ms:1.5:2s,reorder=0.02:2,dup=0.01"
    );
}

#[test]
fn bad_specs_are_rejected_with_a_clear_message() {
    let cases = [
        ("loss=5", "write \"5%\" for percent"),
        ("loss=150%", "above 100%"),
        ("loss=-1%", "negative"),
        ("loss=abc", "not a probability"),
        ("loss=5%,loss=6%", "given twice"),
        ("loss=1%,burst=2%:3", "alternative loss models"),
        ("ge=1%,loss=1%", "expected GB:BG"),
        ("wobbly", "unknown named profile \"wobbly\""),
        ("loss=5%,jitter20", "only be the first item"),
        ("jitter=20", "no unit"),
        ("jitter=20ms:gaussian", "unknown jitter distribution"),
        ("jitter=20 parsecs", "unknown unit"),
        ("delay=-5ms", "negative"),
        ("delay=2h", "unknown unit"),
        ("delay=5000s", "longer than 1 hour"),
        ("nonsense=1", "unknown key \"nonsense\""),
        ("spike=1%", "expected P:S"),
        ("spike=1%:0", "scale must be above 0"),
        ("spike=1%:10ms:0", "shape 0 must be above 0"),
        ("spike=1%:10ms:1.5:5ms", "below its scale"),
        ("burst=5%:0.5", "at least 1 packet"),
        ("burst=100%:3", "below 100%"),
        ("reorder=1%:0", "above 0"),
        ("reorder=1%:fast", "unknown unit"),
        ("fifo=maybe", "not on or off"),
        ("dup=1%:2ms:3", "expected P[:GAP]"),
        ("loss=", "expected P"),
    ];
    for (spec, needle) in cases {
        match Profile::parse(spec) {
            Ok(prof) => panic!("{spec:?} was accepted as {prof:?}"),
            Err(e) => assert!(
                e.contains(needle),
                "{spec:?}: error {e:?} does not mention {needle:?}"
            ),
        }
    }
    // Errors name the offending item.
    let e = Profile::parse("delay=2ms,loss=5").unwrap_err();
    assert!(e.contains("\"loss=5\""), "{e}");
}

#[test]
fn named_profiles_all_exist() {
    let names = [
        "clean", "loss1", "loss5", "loss20", "bursty", "jitter5", "jitter20", "jitter50", "reorder", "dup",
    ];
    for name in names {
        let prof = named_profile(name).unwrap_or_else(|| panic!("named profile {name} missing"));
        assert_eq!(prof.validate(), Ok(()), "{name}");
        assert!(profile_names().contains(&name));
    }
    for name in profile_names() {
        assert!(named_profile(name).is_some(), "{name}");
    }
    assert_eq!(named_profile("LOSS5"), named_profile("loss5"));
    assert_eq!(named_profile("nope"), None);
    assert_eq!(p("loss1").average_loss(), 0.01);
    assert_eq!(p("loss5").average_loss(), 0.05);
    assert_eq!(p("loss20").average_loss(), 0.2);
    assert!(p("reorder").reorder.is_some_and(|r| r.probability > 0.0));
    assert!(p("dup").duplicate.is_some_and(|d| d.probability > 0.0));
    for (name, ms) in [("jitter5", 5), ("jitter20", 20), ("jitter50", 50)] {
        assert_eq!(
            p(name).jitter,
            Jitter::Normal {
                std_dev: Duration::from_millis(ms)
            }
        );
        assert_eq!(p(name).delay, Duration::from_millis(3 * ms));
    }
}
