//! Memory the audio thread will touch, made resident when it is allocated.
//!
//! `vec![0; n]` asks the allocator for zeroed memory, which for large blocks is mapped
//! lazily: the first write to each page would then fault inside the audio thread, a stall
//! the real-time rules forbid. Buffers the audio thread writes (jitter buffer storage,
//! decode and mix buffers, the delay histogram) are allocated through [`resident_vec`].
//! Measured honestly: on the test VM this did not change the start-up spike of 256
//! streams (that was libopus's CPU detection, see `playout.rs`); it removes a fault per
//! page that a slower or busier machine would pay.

/// A vector of `n` copies of `value`, every element written now.
pub fn resident_vec<T: Clone>(n: usize, value: T) -> Vec<T> {
    // black_box: the compiler must not turn allocate-then-fill back into a lazily zeroed
    // allocation
    let mut v = std::hint::black_box(Vec::with_capacity(n));
    v.resize(n, value);
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn holds_the_value() {
        let v = super::resident_vec(100_000, 0u8);
        assert_eq!(v.len(), 100_000);
        assert!(v.iter().all(|&b| b == 0));
    }
}
