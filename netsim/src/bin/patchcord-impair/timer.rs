//! The proxy's clock and a precise one-shot timer on it.
//!
//! On Linux the timer is a `timerfd` on `CLOCK_MONOTONIC` armed with an absolute deadline
//! and awaited through tokio's reactor: wake-ups are within tens of microseconds, where
//! tokio's own timer rounds up to whole milliseconds. Elsewhere it falls back to tokio's
//! `sleep_until` (millisecond resolution).

use std::io;

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// Monotonic time in nanoseconds (CLOCK_MONOTONIC, the timerfd's clock).
    // time_t and c_long are i64 here but i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    pub fn now_ns() -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec we pass; CLOCK_MONOTONIC always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        i64::from(ts.tv_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(ts.tv_nsec))
    }

    /// Ask the kernel not to coalesce this thread's timer wake-ups (default slack: 50 µs).
    pub fn reduce_timer_slack() {
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours.
        unsafe {
            libc::prctl(
                libc::PR_SET_TIMERSLACK,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
    }

    /// SCHED_FIFO at a modest priority for this (the only) thread.
    pub fn promote_to_realtime() -> io::Result<()> {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub struct Timer {
        fd: AsyncFd<OwnedFd>,
        armed: Option<i64>,
    }

    impl Timer {
        pub fn new() -> io::Result<Timer> {
            // SAFETY: timerfd_create has no pointer arguments; a non-negative result is a new fd
            // that we own from here on.
            let raw = unsafe {
                libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a freshly created, valid descriptor not owned by anything else.
            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: `owned` is a valid open descriptor and AsyncFd takes ownership of it, so it
            // stays open and the same until the AsyncFd is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
            Ok(Timer { fd, armed: None })
        }

        pub fn armed(&self) -> bool {
            self.armed.is_some()
        }

        /// Arm for the absolute monotonic time `at` (or disarm with `None`). No system call
        /// when the deadline is unchanged.
        pub fn set(&mut self, at: Option<i64>) -> io::Result<()> {
            if at == self.armed {
                return Ok(());
            }
            // it_value 0 would disarm: an already-passed deadline is armed as 1 ns.
            let t = at.map(|t| t.max(1)).unwrap_or(0);
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: (t / 1_000_000_000) as libc::time_t,
                    tv_nsec: (t % 1_000_000_000) as libc::c_long,
                },
            };
            // SAFETY: valid fd, a valid itimerspec, and a null old-value pointer (allowed).
            let rc = unsafe {
                libc::timerfd_settime(
                    self.fd.as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            self.armed = at;
            Ok(())
        }

        /// Wait until the armed deadline has passed.
        pub async fn fired(&self) -> io::Result<()> {
            loop {
                let mut guard = self.fd.readable().await?;
                let result = guard.try_io(|fd| {
                    let mut expirations = [0u8; 8];
                    // SAFETY: reads at most 8 bytes into an 8-byte buffer we own.
                    let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                match result {
                    Ok(r) => return r,
                    Err(_would_block) => continue,
                }
            }
        }

        /// Forget the deadline after it fired (the kernel disarms a one-shot timer itself).
        pub fn expired(&mut self) {
            self.armed = None;
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    pub fn now_ns() -> i64 {
        i64::try_from(origin().elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    pub fn reduce_timer_slack() {}

    pub fn promote_to_realtime() -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "only on Linux"))
    }

    pub struct Timer {
        armed: Option<i64>,
    }

    impl Timer {
        pub fn new() -> io::Result<Timer> {
            Ok(Timer { armed: None })
        }
        pub fn armed(&self) -> bool {
            self.armed.is_some()
        }
        pub fn set(&mut self, at: Option<i64>) -> io::Result<()> {
            self.armed = at;
            Ok(())
        }
        pub async fn fired(&self) -> io::Result<()> {
            if let Some(at) = self.armed {
                let at = origin() + Duration::from_nanos(at.max(0) as u64);
                tokio::time::sleep_until(at.into()).await;
            }
            Ok(())
        }
        pub fn expired(&mut self) {
            self.armed = None;
        }
    }
}

pub use imp::{now_ns, promote_to_realtime, reduce_timer_slack, Timer};

/// Helper so callers can treat "no timer support" uniformly.
pub fn new_timer() -> io::Result<Timer> {
    Timer::new()
}
