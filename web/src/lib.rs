//! What a person or a monitoring system sees of a running patchcord, over HTTP
//! (`--http ADDR:PORT` on both binaries), and of a finished run, as a file:
//!
//! - [`metrics`]: the Prometheus text format, written from a binary's typed stats record
//!   through its [`Metrics`] implementation;
//! - [`server`]: the endpoint itself (axum): `/metrics`, `/stats.json`, `/history.json`,
//!   server-sent `/events`, and `/`, the dashboard (`assets/dashboard.html`: live level
//!   meters and plots, hand-written JS and canvas, served from the binary);
//! - [`connections`]: what a connection may hold (a cap on open connections, a timeout
//!   for a request's headers, a bound on their size), and the counts of those refused;
//! - [`report`]: a `--stats-json` file written into that same page, as a self-contained
//!   HTML report of the run.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

/// `eprintln!` that never panics: standard error may be closed (`… 2>&1 | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stderr(), $($arg)*); }};
}

pub mod connections;
pub mod metrics;
pub mod report;
pub mod server;

pub use connections::HttpCounters;
pub use metrics::{Metrics, MetricsWriter, PerItem, Sample};
pub use server::{HttpArgs, Publisher};
