//! Impairment profiles: what the path does, the text syntax for it, and the named profiles.

use std::fmt;
use std::time::Duration;

/// Normal jitter is truncated at this many standard deviations (values beyond are redrawn),
/// so a profile's worst-case jitter is bounded. The truncated distribution's standard
/// deviation is 0.9866 × the configured one.
pub const NORMAL_JITTER_LIMIT_SIGMAS: f64 = 3.0;
/// Default Pareto shape (tail index) of delay spikes: heavy-tailed, finite mean
/// (3 × scale), infinite variance.
pub const DEFAULT_SPIKE_SHAPE: f64 = 1.5;
/// Default cap of a delay spike, as a multiple of its scale.
pub const DEFAULT_SPIKE_MAX_SCALES: u32 = 25;
/// Default extra delay of a reordered packet: this many (smoothed) packet intervals.
pub const DEFAULT_REORDER_INTERVALS: f64 = 2.0;
/// Longest duration any profile field may have.
pub const MAX_PROFILE_DURATION: Duration = Duration::from_secs(3600);

/// The text syntax of [`Profile::parse`] (also printed by `patchcord-impair --help`).
pub const PROFILE_SYNTAX: &str = "\
A profile is a comma-separated list of items. The first item may be the name of a named
profile (clean, loss1, loss5, loss20, bursty, jitter5, jitter20, jitter50, reorder, dup,
mixed); later KEY=VALUE items override it. Each key may appear once.

  loss=P                      independent random loss with probability P
  burst=P:LEN                 bursty (Gilbert) loss: average loss P, mean burst LEN packets
  ge=GB:BG[:LB[:LG]]          Gilbert-Elliott loss: P(good->bad)=GB, P(bad->good)=BG per
                              packet, loss probability LB in bad (default 100%) and LG in
                              good (default 0%)   (loss, burst and ge exclude each other)
  delay=D                     base one-way delay
  jitter=D[:normal|uniform]   per-packet delay variation: normal with standard deviation D
                              (default; truncated at 3 D) or uniform in [-D, +D]; a packet's
                              delay never goes below 0
  fifo=on|off                 on (default): jitter and spikes never let a packet overtake an
                              earlier one (a queue: a late packet holds back the ones behind
                              it); off: every packet's delay is independent
  spike=P:S[:SHAPE[:MAX]]     with probability P add a delay spike drawn from a Pareto
                              distribution with scale S (minimum S) and shape SHAPE (default
                              1.5: heavy tail), capped at MAX (default 25 S)
  reorder=P[:EXTRA]           with probability P delay a packet by EXTRA more, outside the
                              fifo queue, so that later packets overtake it; EXTRA is a
                              duration, or a plain number N of packet intervals (default 2),
                              measured as the smoothed gap between submitted packets
  dup=P[:GAP]                 with probability P deliver a packet twice, the copy GAP after
                              the original (default 0)

P is a percentage (5%, 0.5%) or a fraction in [0, 1] (0.05). D, S, MAX, EXTRA, GAP are a
number with a unit: ns, us, ms, s (20ms, 0.5ms, 1500us); 0 needs no unit.
Example: \"jitter20,loss=2%,dup=1%\", \"burst=5%:3,delay=10ms,jitter=2ms:uniform\".";

/// Which packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    /// Nothing is lost.
    #[default]
    None,
    /// Each packet is lost independently with probability `p`.
    Random { p: f64 },
    /// Gilbert–Elliott two-state Markov chain. Each packet is lost with probability
    /// `loss_in_good` / `loss_in_bad` according to the current state, then the state moves
    /// with `p_good_to_bad` / `p_bad_to_good`. The chain starts in the good state.
    GilbertElliott {
        p_good_to_bad: f64,
        p_bad_to_good: f64,
        loss_in_bad: f64,
        loss_in_good: f64,
    },
}

impl Loss {
    /// Gilbert model with average loss `average` and mean burst length `mean_burst`
    /// packets (100% loss in the bad state, none in the good state):
    /// `p_bad_to_good = 1 / mean_burst`, `p_good_to_bad = p_bad_to_good · average / (1 − average)`.
    pub fn bursty(average: f64, mean_burst: f64) -> Loss {
        let r = 1.0 / mean_burst;
        Loss::GilbertElliott {
            p_good_to_bad: r * average / (1.0 - average),
            p_bad_to_good: r,
            loss_in_bad: 1.0,
            loss_in_good: 0.0,
        }
    }

    /// Long-run fraction of packets lost. For Gilbert–Elliott, the stationary probability
    /// of the bad state is `π_B = GB / (GB + BG)` and the loss is
    /// `π_B · LB + (1 − π_B) · LG`.
    pub fn average(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random { p } => p,
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_bad,
                loss_in_good,
            } => {
                if p_good_to_bad + p_bad_to_good == 0.0 {
                    return loss_in_good; // stays in the good state forever
                }
                let bad = p_good_to_bad / (p_good_to_bad + p_bad_to_good);
                bad * loss_in_bad + (1.0 - bad) * loss_in_good
            }
        }
    }
}

/// Per-packet delay variation added to the base delay.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Jitter {
    #[default]
    None,
    /// Normal with this standard deviation, truncated at [`NORMAL_JITTER_LIMIT_SIGMAS`].
    Normal { std_dev: Duration },
    /// Uniform in `[-max, +max]`.
    Uniform { max: Duration },
}

/// Rare large extra delays with a heavy (Pareto) tail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    /// Probability that a packet gets a spike.
    pub probability: f64,
    /// Pareto scale: the smallest spike.
    pub scale: Duration,
    /// Pareto shape (tail index): `P(spike > x) = (scale / x)^shape`.
    pub shape: f64,
    /// Cap on one spike.
    pub max: Duration,
}

/// How much later a reordered packet is delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReorderExtra {
    /// A fixed extra delay.
    Fixed(Duration),
    /// This many packet intervals, the interval being the exponentially smoothed (1/16)
    /// gap between consecutive submissions (20 ms before the first gap is known); at least
    /// 1 ms.
    Intervals(f64),
}

/// Reordering: a chosen packet is held back so later ones overtake it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reorder {
    pub probability: f64,
    pub extra: ReorderExtra,
}

/// Duplication: a chosen packet is delivered twice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Duplicate {
    pub probability: f64,
    /// The copy arrives this long after the original.
    pub gap: Duration,
}

/// Everything the impaired path does. `Profile::default()` is a clean path.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub loss: Loss,
    /// Base one-way delay.
    pub delay: Duration,
    pub jitter: Jitter,
    /// Packets do not overtake each other through jitter or spikes (see [`PROFILE_SYNTAX`]).
    pub fifo: bool,
    pub spike: Option<Spike>,
    pub reorder: Option<Reorder>,
    pub duplicate: Option<Duplicate>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            loss: Loss::None,
            delay: Duration::ZERO,
            jitter: Jitter::None,
            fifo: true,
            spike: None,
            reorder: None,
            duplicate: None,
        }
    }
}

/// Named profiles: (name, spec, description).
const NAMED: &[(&str, &str, &str)] = &[
    ("clean", "", "no impairment"),
    ("loss1", "loss=1%", "1% independent random loss"),
    ("loss5", "loss=5%", "5% independent random loss"),
    ("loss20", "loss=20%", "20% independent random loss"),
    (
        "bursty",
        "burst=5%:3",
        "Gilbert-Elliott bursty loss, 5% on average in bursts of 3 packets on average",
    ),
    (
        "jitter5",
        "delay=15ms,jitter=5ms",
        "normal jitter, standard deviation 5 ms, on a 15 ms base delay",
    ),
    (
        "jitter20",
        "delay=60ms,jitter=20ms,spike=0.2%:50ms",
        "normal jitter, sd 20 ms, 60 ms base delay, 0.2% heavy-tailed spikes (Pareto 1.5, >= 50 ms)",
    ),
    (
        "jitter50",
        "delay=150ms,jitter=50ms,spike=0.5%:100ms",
        "normal jitter, sd 50 ms, 150 ms base delay, 0.5% heavy-tailed spikes (Pareto 1.5, >= 100 ms)",
    ),
    (
        "reorder",
        "reorder=2%",
        "2% of packets held back 2 packet intervals, so later ones overtake them",
    ),
    ("dup", "dup=1%", "1% of packets delivered twice"),
    (
        "mixed",
        "burst=2%:2,delay=20ms,jitter=5ms,spike=0.2%:30ms,reorder=0.5%,dup=0.5%",
        "a bit of everything: 2% bursty loss, jitter, spikes, reordering, duplication",
    ),
];

/// Names of all named profiles, in a stable order.
pub fn profile_names() -> Vec<&'static str> {
    NAMED.iter().map(|(name, _, _)| *name).collect()
}

/// (name, spec, description) of every named profile.
pub fn named_profiles() -> &'static [(&'static str, &'static str, &'static str)] {
    NAMED
}

/// Named profiles used by simulations and benchmarks: "clean", "loss1", "loss5", "loss20",
/// "bursty" (Gilbert–Elliott, 5% average loss in bursts of mean length 3), "jitter5",
/// "jitter20", "jitter50" (normal jitter with that standard deviation in ms on a base delay
/// of 3× it, plus rare heavy-tailed spikes for jitter20/50), "reorder", "dup", "mixed".
/// Case-insensitive.
pub fn named_profile(name: &str) -> Option<Profile> {
    let name = name.trim();
    NAMED
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, spec, _)| Profile::parse(spec).ok())
}

impl Profile {
    /// Parse the text syntax described in [`PROFILE_SYNTAX`]. An empty spec is a clean path.
    pub fn parse(spec: &str) -> Result<Profile, String> {
        let mut profile = Profile::default();
        let mut seen: Vec<String> = Vec::new();
        let mut loss_key: Option<String> = None;
        let mut first = true;
        for raw in spec.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            let was_first = std::mem::replace(&mut first, false);
            let Some((key, value)) = item.split_once('=') else {
                if !was_first {
                    return Err(format!(
                        "\"{item}\": a named profile can only be the first item (or a KEY=VALUE item is missing its '=')"
                    ));
                }
                let Some((_, named_spec, _)) = NAMED.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(item))
                else {
                    return Err(format!(
                        "unknown named profile \"{item}\" (named profiles: {}; or use KEY=VALUE items: loss, burst, ge, delay, jitter, fifo, spike, reorder, dup)",
                        profile_names().join(", ")
                    ));
                };
                profile = Profile::parse(named_spec)?;
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            if seen.contains(&key) {
                return Err(format!("\"{key}\" is given twice"));
            }
            seen.push(key.clone());
            if matches!(key.as_str(), "loss" | "burst" | "ge") {
                if let Some(other) = &loss_key {
                    return Err(format!(
                        "\"{key}\" and \"{other}\" are alternative loss models; give only one"
                    ));
                }
                loss_key = Some(key.clone());
            }
            profile
                .apply(&key, value)
                .map_err(|e| format!("bad \"{item}\": {e}"))?;
        }
        Ok(profile)
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "loss" => {
                let [p] = fields::<1, 1>(value, "P")?;
                self.loss = Loss::Random {
                    p: parse_probability(p.unwrap_or_default())?,
                };
            }
            "burst" => {
                let [p, len] = fields::<2, 2>(value, "P:LEN")?;
                let p = parse_probability(p.unwrap_or_default())?;
                let len_text = len.unwrap_or_default();
                let len: f64 = len_text
                    .parse()
                    .map_err(|_| format!("burst length \"{len_text}\" is not a number of packets"))?;
                if !(len.is_finite() && len >= 1.0) {
                    return Err(format!("burst length {len_text} must be at least 1 packet"));
                }
                if p >= 1.0 {
                    return Err("average loss must be below 100% for a bursty model".into());
                }
                self.loss = Loss::bursty(p, len);
            }
            "ge" => {
                let [gb, bg, lb, lg] = fields::<2, 4>(value, "GB:BG[:LB[:LG]]")?;
                self.loss = Loss::GilbertElliott {
                    p_good_to_bad: parse_probability(gb.unwrap_or_default())?,
                    p_bad_to_good: parse_probability(bg.unwrap_or_default())?,
                    loss_in_bad: lb.map(parse_probability).transpose()?.unwrap_or(1.0),
                    loss_in_good: lg.map(parse_probability).transpose()?.unwrap_or(0.0),
                };
            }
            "delay" => {
                let [d] = fields::<1, 1>(value, "D")?;
                self.delay = parse_duration(d.unwrap_or_default())?;
            }
            "jitter" => {
                let [d, kind] = fields::<1, 2>(value, "D[:normal|uniform]")?;
                let d = parse_duration(d.unwrap_or_default())?;
                let uniform = match kind.map(|k| k.to_ascii_lowercase()).as_deref() {
                    None | Some("normal") => false,
                    Some("uniform") => true,
                    Some(other) => {
                        return Err(format!(
                            "unknown jitter distribution \"{other}\" (normal or uniform)"
                        ))
                    }
                };
                self.jitter = match (d.is_zero(), uniform) {
                    (true, _) => Jitter::None,
                    (false, false) => Jitter::Normal { std_dev: d },
                    (false, true) => Jitter::Uniform { max: d },
                };
            }
            "fifo" => {
                let [v] = fields::<1, 1>(value, "on|off")?;
                self.fifo = match v.unwrap_or_default().to_ascii_lowercase().as_str() {
                    "on" | "true" | "yes" | "1" => true,
                    "off" | "false" | "no" | "0" => false,
                    other => return Err(format!("\"{other}\" is not on or off")),
                };
            }
            "spike" => {
                let [p, scale, shape, max] = fields::<2, 4>(value, "P:S[:SHAPE[:MAX]]")?;
                let probability = parse_probability(p.unwrap_or_default())?;
                let scale = parse_duration(scale.unwrap_or_default())?;
                if scale.is_zero() {
                    return Err("spike scale must be above 0".into());
                }
                let shape = match shape {
                    None => DEFAULT_SPIKE_SHAPE,
                    Some(text) => {
                        let s: f64 = text
                            .parse()
                            .map_err(|_| format!("spike shape \"{text}\" is not a number"))?;
                        if !(s.is_finite() && s > 0.0) {
                            return Err(format!("spike shape {text} must be above 0"));
                        }
                        s
                    }
                };
                let max = match max {
                    None => (scale * DEFAULT_SPIKE_MAX_SCALES).min(MAX_PROFILE_DURATION),
                    Some(text) => parse_duration(text)?,
                };
                if max < scale {
                    return Err(format!(
                        "spike maximum {} is below its scale {}",
                        fmt_duration(max),
                        fmt_duration(scale)
                    ));
                }
                self.spike = Some(Spike {
                    probability,
                    scale,
                    shape,
                    max,
                });
            }
            "reorder" => {
                let [p, extra] = fields::<1, 2>(value, "P[:EXTRA]")?;
                let probability = parse_probability(p.unwrap_or_default())?;
                let extra = match extra {
                    None => ReorderExtra::Intervals(DEFAULT_REORDER_INTERVALS),
                    Some(text) if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                        let n: f64 = text
                            .parse()
                            .map_err(|_| format!("\"{text}\" is not a number of packet intervals"))?;
                        if !(n.is_finite() && n > 0.0 && n <= 1000.0) {
                            return Err(format!(
                                "{text} packet intervals: must be above 0 and at most 1000"
                            ));
                        }
                        ReorderExtra::Intervals(n)
                    }
                    Some(text) => {
                        let d = parse_duration(text)?;
                        if d.is_zero() {
                            return Err("reorder extra delay must be above 0".into());
                        }
                        ReorderExtra::Fixed(d)
                    }
                };
                self.reorder = Some(Reorder { probability, extra });
            }
            "dup" => {
                let [p, gap] = fields::<1, 2>(value, "P[:GAP]")?;
                let probability = parse_probability(p.unwrap_or_default())?;
                let gap = gap.map(parse_duration).transpose()?.unwrap_or(Duration::ZERO);
                self.duplicate = Some(Duplicate { probability, gap });
            }
            other => {
                return Err(format!(
                "unknown key \"{other}\" (keys: loss, burst, ge, delay, jitter, fifo, spike, reorder, dup)"
            ))
            }
        }
        Ok(())
    }

    /// Check a programmatically built profile: probabilities in [0, 1], durations at most
    /// [`MAX_PROFILE_DURATION`], spike shape above 0 and max not below scale. Profiles from
    /// [`Profile::parse`] always pass. (An `Impairment` never panics on an invalid profile;
    /// it just does what the numbers say, e.g. a probability above 1 acts as 1.)
    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{name} probability {p} is not in [0, 1]"))
            }
        };
        let dur = |name: &str, d: Duration| {
            if d <= MAX_PROFILE_DURATION {
                Ok(())
            } else {
                Err(format!("{name} {d:?} is longer than {MAX_PROFILE_DURATION:?}"))
            }
        };
        match self.loss {
            Loss::None => {}
            Loss::Random { p } => prob("loss", p)?,
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_bad,
                loss_in_good,
            } => {
                prob("good-to-bad", p_good_to_bad)?;
                prob("bad-to-good", p_bad_to_good)?;
                prob("loss-in-bad", loss_in_bad)?;
                prob("loss-in-good", loss_in_good)?;
            }
        }
        dur("delay", self.delay)?;
        match self.jitter {
            Jitter::None => {}
            Jitter::Normal { std_dev } => dur("jitter", std_dev)?,
            Jitter::Uniform { max } => dur("jitter", max)?,
        }
        if let Some(s) = &self.spike {
            prob("spike", s.probability)?;
            dur("spike scale", s.scale)?;
            dur("spike max", s.max)?;
            if !(s.shape.is_finite() && s.shape > 0.0) {
                return Err(format!("spike shape {} must be above 0", s.shape));
            }
            if s.max < s.scale {
                return Err("spike max is below spike scale".into());
            }
        }
        if let Some(r) = &self.reorder {
            prob("reorder", r.probability)?;
            match r.extra {
                ReorderExtra::Fixed(d) => dur("reorder extra", d)?,
                ReorderExtra::Intervals(n) => {
                    if !(n.is_finite() && n > 0.0 && n <= 1000.0) {
                        return Err(format!("reorder intervals {n} must be in (0, 1000]"));
                    }
                }
            }
        }
        if let Some(d) = &self.duplicate {
            prob("dup", d.probability)?;
            dur("dup gap", d.gap)?;
        }
        Ok(())
    }

    /// Long-run fraction of submitted packets that are dropped.
    pub fn average_loss(&self) -> f64 {
        self.loss.average()
    }
}

/// The canonical spec: `Profile::parse(&p.to_string()) == Ok(p)` for every valid profile.
/// Probabilities are written as fractions (shortest exact form), durations with the
/// largest unit that divides them.
impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        match self.loss {
            Loss::None => {}
            Loss::Random { p } => items.push(format!("loss={p}")),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_bad,
                loss_in_good,
            } => items.push(format!(
                "ge={p_good_to_bad}:{p_bad_to_good}:{loss_in_bad}:{loss_in_good}"
            )),
        }
        if !self.delay.is_zero() {
            items.push(format!("delay={}", fmt_duration(self.delay)));
        }
        match self.jitter {
            Jitter::None => {}
            Jitter::Normal { std_dev } => items.push(format!("jitter={}", fmt_duration(std_dev))),
            Jitter::Uniform { max } => items.push(format!("jitter={}:uniform", fmt_duration(max))),
        }
        if !self.fifo {
            items.push("fifo=off".into());
        }
        if let Some(s) = &self.spike {
            items.push(format!(
                "spike={}:{}:{}:{}",
                s.probability,
                fmt_duration(s.scale),
                s.shape,
                fmt_duration(s.max)
            ));
        }
        if let Some(r) = &self.reorder {
            match r.extra {
                ReorderExtra::Fixed(d) => {
                    items.push(format!("reorder={}:{}", r.probability, fmt_duration(d)))
                }
                ReorderExtra::Intervals(n) => items.push(format!("reorder={}:{n}", r.probability)),
            }
        }
        if let Some(d) = &self.duplicate {
            if d.gap.is_zero() {
                items.push(format!("dup={}", d.probability));
            } else {
                items.push(format!("dup={}:{}", d.probability, fmt_duration(d.gap)));
            }
        }
        if items.is_empty() {
            f.write_str("clean")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

/// Split `value` on ':' into between MIN and MAX fields.
fn fields<'a, const MIN: usize, const MAX: usize>(
    value: &'a str,
    shape: &str,
) -> Result<[Option<&'a str>; MAX], String> {
    let parts: Vec<&str> = value.split(':').map(str::trim).collect();
    if parts.len() < MIN || parts.len() > MAX || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("expected {shape}, got \"{value}\""));
    }
    let mut out = [None; MAX];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = Some(part);
    }
    Ok(out)
}

/// "5%" → 0.05, "0.05" → 0.05. Must lie in [0, 1].
pub fn parse_probability(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, percent) = match text.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (text, false),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not a probability (write 5% or 0.05)"))?;
    if !value.is_finite() {
        return Err(format!("\"{text}\" is not a probability (write 5% or 0.05)"));
    }
    let p = if percent { value / 100.0 } else { value };
    if p < 0.0 {
        return Err(format!("probability \"{text}\" is negative"));
    }
    if p > 1.0 {
        return Err(if percent {
            format!("probability \"{text}\" is above 100%")
        } else {
            format!("probability \"{text}\" is above 1 (write \"{text}%\" for percent)")
        });
    }
    Ok(p)
}

/// "20ms", "0.5ms", "1500us", "2s", "250ns", "0" → Duration (exact, no floating point).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!("duration \"{text}\" is negative"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration \"{text}\" has no unit (ns, us, ms, s)"))?;
    let (number, unit) = text.split_at(split);
    let unit_ns: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" => return Err(format!("duration \"{text}\" has no unit (ns, us, ms, s)")),
        other => return Err(format!("unknown unit \"{other}\" in \"{text}\" (ns, us, ms, s)")),
    };
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(format!("\"{text}\" is not a duration"));
    }
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 20;
    if !digits_ok(int_part) || !digits_ok(frac_part) {
        return Err(format!("\"{text}\" is not a duration"));
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| format!("\"{text}\" is not a duration"))?
    };
    let mut ns = int * unit_ns;
    // Fraction: frac_digits / 10^len × unit_ns, which must come out whole.
    if !frac_part.is_empty() {
        let frac: u128 = frac_part
            .parse()
            .map_err(|_| format!("\"{text}\" is not a duration"))?;
        let denom = 10u128.pow(frac_part.len() as u32);
        let scaled = frac * unit_ns;
        if !scaled.is_multiple_of(denom) {
            return Err(format!("duration \"{text}\" is finer than 1 ns"));
        }
        ns += scaled / denom;
    }
    if ns > MAX_PROFILE_DURATION.as_nanos() {
        return Err(format!("duration \"{text}\" is longer than 1 hour"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// A duration in the largest unit that divides it: 20ms, 1500us, 3ns, 0.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0".into();
    }
    for (unit, size) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration(".25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1500us"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("20").unwrap_err().contains("no unit"));
        assert!(parse_duration("1.5ns").unwrap_err().contains("finer than 1 ns"));
        assert!(parse_duration("20 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-3ms").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("3601s").unwrap_err().contains("1 hour"));
        assert!(parse_duration("1.2.3ms").is_err());
        assert!(parse_duration("99999999999999999999999999s").is_err());
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1500us");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn probabilities() {
        assert_eq!(parse_probability("5%"), Ok(0.05));
        assert_eq!(parse_probability("0.05"), Ok(0.05));
        assert_eq!(parse_probability("100%"), Ok(1.0));
        assert!(parse_probability("5").unwrap_err().contains("write \"5%\""));
        assert!(parse_probability("150%").unwrap_err().contains("above 100%"));
        assert!(parse_probability("-1%").unwrap_err().contains("negative"));
        assert!(parse_probability("NaN").is_err());
        assert!(parse_probability("inf%").is_err());
        assert!(parse_probability("lots").is_err());
    }
}
