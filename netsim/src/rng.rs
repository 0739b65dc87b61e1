//! Deterministic random numbers and the distributions the model draws from.
//!
//! Every draw comes from a ChaCha8 stream (`rand_chacha`, whose output is fixed by its
//! specification for a given key and stream number) and is turned into a value with IEEE-754
//! basic arithmetic and `sqrt` only, which are correctly rounded on every platform Rust
//! targets with SSE2 / NEON. The platform `ln`/`exp`/`powf` are *not* used: libm
//! implementations differ in their last bits between systems, and one bit can move a delivery
//! time by a nanosecond. [`ln`] and [`exp`] below are our own series evaluations built only
//! from `+ - * /`, so the same seed gives bit-identical fates and delivery times everywhere.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LN_2: f64 = std::f64::consts::LN_2;
const SQRT_2: f64 = std::f64::consts::SQRT_2;
/// 2^-53: spacing of the 53-bit uniform grid.
const UNIT_53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// One independent random stream (one per impairment aspect, so that e.g. the loss pattern
/// for a seed does not change when jitter is switched on).
#[derive(Clone, Debug)]
pub(crate) struct Stream(ChaCha8Rng);

impl Stream {
    /// Stream number `stream` of the generator keyed by `seed`.
    pub(crate) fn new(seed: u64, stream: u64) -> Stream {
        // Expand the 64-bit seed into a 256-bit key with SplitMix64 (explicit here rather
        // than relying on a library's `seed_from_u64` expansion staying the same).
        let mut state = seed;
        let mut key = [0u8; 32];
        for chunk in key.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream);
        Stream(rng)
    }

    /// Uniform in [0, 1), 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * UNIT_53
    }

    /// `true` with probability `p` (p <= 0 or NaN: never; p >= 1: always).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal deviate truncated to `[-limit, limit]` (Marsaglia's polar method,
    /// with rejection of values beyond the limit).
    pub(crate) fn std_normal_truncated(&mut self, limit: f64) -> f64 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s >= 1.0 || s == 0.0 {
                continue;
            }
            let z = u * (-2.0 * ln(s) / s).sqrt();
            if z.abs() <= limit {
                return z;
            }
        }
    }

    /// Pareto deviate with scale 1 and the given shape (tail index): `>= 1`,
    /// `P(X > x) = x^-shape`. Inverse-CDF method.
    pub(crate) fn pareto(&mut self, shape: f64) -> f64 {
        let u = 1.0 - self.uniform(); // (0, 1]
        exp(-ln(u) / shape)
    }
}

/// Natural logarithm from basic arithmetic only. `x` must be positive and finite
/// (returns NaN / -inf like `f64::ln` otherwise). Relative error ~1e-16.
pub(crate) fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    if biased == 0 {
        // Subnormal: scale into the normal range first (2^54 is exact).
        return ln(x * 18_014_398_509_481_984.0) - 54.0 * LN_2;
    }
    let mut e = biased - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)); // [1, 2)
    if m > SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // m in [sqrt(1/2), sqrt(2)]: ln m = 2 atanh(t), t = (m-1)/(m+1), |t| <= 0.1716.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    // atanh(t)/t = sum t^(2k)/(2k+1); 14 terms leave < 1e-22 relative.
    let mut p = 1.0 / 29.0;
    for k in (0..14).rev() {
        p = p * t2 + 1.0 / (2 * k + 1) as f64;
    }
    2.0 * t * p + e as f64 * LN_2
}

/// Exponential from basic arithmetic only. Relative error ~1e-15.
pub(crate) fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x > 709.7 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    let k = (x / LN_2).round();
    // Cody–Waite: ln 2 split in two (bit patterns of 6.93147180369123816490e-1 and
    // 1.90821492927058770002e-10) so that k · LN2_HI is exact for |k| < 2^11.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // |r| <= ~0.347. Taylor series to r^18/18! (< 1e-24), Horner form.
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0;
    for n in (1..=18).rev() {
        p = 1.0 + r * p / n as f64;
    }
    let k = k as i32;
    let half = k / 2;
    p * pow2(half) * pow2(k - half)
}

/// 2^k for k in the normal exponent range (clamped beyond it).
fn pow2(k: i32) -> f64 {
    let k = k.clamp(-1022, 1023);
    f64::from_bits(((k + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std() {
        let mut x = 1e-300;
        while x < 1e300 {
            let ours = ln(x);
            let std = x.ln();
            assert!(
                (ours - std).abs() <= 4e-16 * std.abs().max(1.0),
                "ln({x}) = {ours}, std {std}"
            );
            x *= 1.37;
        }
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(5e-324).is_finite());
        assert!(ln(-1.0).is_nan());
    }

    #[test]
    fn exp_matches_std() {
        let mut x = -700.0;
        while x < 700.0 {
            let ours = exp(x);
            let std = x.exp();
            assert!((ours - std).abs() <= 2e-15 * std, "exp({x}) = {ours}, std {std}");
            x += 0.731;
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let mut a = Stream::new(7, 1);
        let mut b = Stream::new(7, 1);
        let mut c = Stream::new(7, 2);
        let mut d = Stream::new(8, 1);
        let va: Vec<u64> = (0..8).map(|_| a.0.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.0.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.0.next_u64()).collect();
        let vd: Vec<u64> = (0..8).map(|_| d.0.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        assert_ne!(va, vd);
    }

    #[test]
    fn known_first_values() {
        // Pins the whole chain (seed expansion, ChaCha8, uniform mapping): a change in any of
        // them would silently change every simulation's fates, so it must fail here.
        let mut s = Stream::new(42, 1);
        let bits: Vec<u64> = (0..3).map(|_| s.uniform().to_bits()).collect();
        assert_eq!(
            bits,
            [4605299006476600730, 4594789061365410488, 4605611977265742853]
        );
    }

    #[test]
    fn normal_moments() {
        let mut s = Stream::new(1, 9);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| s.std_normal_truncated(3.0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        // Truncation at 3 sigma leaves a standard deviation of 0.9866.
        assert!((var.sqrt() - 0.9866).abs() < 0.01, "sd {}", var.sqrt());
        assert!(xs.iter().all(|x| x.abs() <= 3.0));
    }

    #[test]
    fn pareto_tail() {
        let mut s = Stream::new(3, 4);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| s.pareto(1.5)).collect();
        assert!(xs.iter().all(|&x| x >= 1.0));
        // P(X > 4) = 4^-1.5 = 0.125
        let frac = xs.iter().filter(|&&x| x > 4.0).count() as f64 / n as f64;
        assert!((frac - 0.125).abs() < 0.005, "tail fraction {frac}");
    }
}
