//! Real-time scheduling for the threads on the audio path that are not audio callbacks:
//! the sender's encoder thread, the receiver's network thread, and the virtual devices'
//! clock threads (which stand in for hardware). Uses `audio_thread_priority` without
//! D-Bus: `pthread_setschedparam(SCHED_FIFO)`, priority 10, which works as root or with an
//! `rtprio` limit, and fails cleanly otherwise.

/// Promote the calling thread to real-time priority for the rest of its life.
pub fn promote_current_thread(period_frames: u32) -> Result<(), String> {
    match audio_thread_priority::promote_current_thread_to_real_time(period_frames, 48_000) {
        // The handle only restores the old policy when passed back to the crate; the
        // thread keeps its priority until it ends.
        Ok(_handle) => Ok(()),
        Err(e) => Err(format!(
            "real-time priority unavailable ({e}); running with normal priority"
        )),
    }
}
