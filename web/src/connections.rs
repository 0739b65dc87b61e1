//! The endpoint's connections, bounded against hostile clients: what any process on the
//! machine (or, with `--http-public`, anyone on the network) can make the HTTP thread
//! hold, and what it counts when it drops.
//!
//! - **At most [`Limits::max_connections`] open at once** (64). A connection over the cap
//!   is answered `503` (best effort: one non-blocking write) and closed at once, and
//!   counted in `http_refused`. Without the cap, each idle TCP connection costs a task,
//!   its buffers and a file descriptor, and a few thousand exhaust the process's
//!   descriptors (1024 by default), the audio's sockets and files included. 64 leaves
//!   room for the [`MAX_EVENT_CLIENTS`](crate::server::MAX_EVENT_CLIENTS) dashboards, a
//!   few scrapers and browsers; at worst, 64 requests' buffers (16 KiB each) and answers
//!   (the history, the largest, about a megabyte after five minutes).
//!   The cap counts connections, not requests: a limit on requests (tower's
//!   `ConcurrencyLimit`) leaves a connection that never sends one unbounded.
//! - **The request's headers within [`Limits::header_timeout`]** (5 s) of the connection
//!   (hyper's `header_read_timeout`): a client that sends nothing, or its headers a byte at
//!   a time (slowloris), is closed and counted in `http_timeouts`. A client here sends its
//!   few hundred bytes in milliseconds.
//! - **An answer that moves within [`Limits::write_timeout`]** (10 s; `tokio-io-timeout`
//!   on the socket's writes): a client that asks and then reads nothing (its TCP window
//!   shut) would hold its slot and its answer for as long as it liked; it is cut off
//!   when no byte has gone out for that long, and counted in `http_timeouts` too. A slow
//!   link still moves; a dashboard reads its stream as it comes.
//! - **No keep-alive**: each connection serves one request and closes, so no idle
//!   connection waits between requests holding a slot; at one scrape a second at most,
//!   the extra TCP handshake costs nothing. A dashboard's event stream is one request,
//!   and lives as long as the page.
//! - **Request headers of at most [`Limits::max_request_bytes`]** (16 KiB, hyper's
//!   `max_buf_size`; a browser's request with a few cookies fits): a larger one is
//!   answered `431` and closed; it and any request hyper cannot parse are counted in
//!   `http_bad_requests`. No route reads a request body, so none is ever buffered.
//!
//! Which client gets a slot is first come, first served: at accept, before a byte of
//! the request, nothing tells a scraper from an attacker, so no slot is kept aside for
//! one. An attacker who takes every slot shuts a scraper out for a timeout (5 or 10 s),
//! or as long as it keeps reconnecting, or reading a byte now and then; even then the
//! cost is the HTTP thread's (bounded), never the audio's.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use crate::metrics::MetricsWriter;

/// What a connection may hold; [`Limits::DEFAULT`] is what the binaries use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub max_request_bytes: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(10),
        max_request_bytes: 16 * 1024,
    };
}

/// What the endpoint refused since the start (the keys of `--stats-json`, and
/// `…_http_*_total` in `/metrics`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HttpCounters {
    /// Connections over the cap, closed at once.
    pub http_refused: u64,
    /// Connections closed for not sending their request's headers in time, or not
    /// reading the answer.
    pub http_timeouts: u64,
    /// Requests refused as too large or malformed.
    pub http_bad_requests: u64,
}

/// The counters, as the HTTP thread updates them.
#[derive(Default)]
pub struct Counters {
    refused: AtomicU64,
    timeouts: AtomicU64,
    bad_requests: AtomicU64,
}

impl Counters {
    pub fn read(&self) -> HttpCounters {
        HttpCounters {
            http_refused: self.refused.load(Ordering::Relaxed),
            http_timeouts: self.timeouts.load(Ordering::Relaxed),
            http_bad_requests: self.bad_requests.load(Ordering::Relaxed),
        }
    }
}

impl HttpCounters {
    /// Its families in `/metrics`: `{prefix}http_refused_total` and so on.
    pub fn write_metrics(&self, m: &mut MetricsWriter, prefix: &str) {
        for (name, help, value) in [
            (
                "refused",
                "HTTP connections over the cap, closed at once",
                self.http_refused,
            ),
            (
                "timeouts",
                "HTTP connections that sent no request headers in time, or read no answer",
                self.http_timeouts,
            ),
            (
                "bad_requests",
                "HTTP requests too large or malformed",
                self.http_bad_requests,
            ),
        ] {
            m.family(
                &format!("{prefix}http_{name}"),
                help,
                true,
                &[(vec![], value as f64)],
            );
        }
    }
}

/// What a connection over the cap is told before it is closed.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 21\r\n\r\ntoo many connections\n";

/// Accept connections and serve `app` on each, within `limits`, forever.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, counters: Arc<Counters>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_request_bytes)
        .keep_alive(false);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                wait_after(&e).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let _ = tcp.try_write(BUSY);
            counters.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut tcp = TimeoutStream::new(tcp);
        tcp.set_write_timeout(Some(limits.write_timeout));
        let connection =
            http.serve_connection(TokioIo::new(Box::pin(tcp)), TowerToHyperService::new(app.clone()));
        let counters = counters.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                if timed_out(&e) {
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                } else if e.is_parse() {
                    counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(slot);
        });
    }
}

/// Whether the connection ended for want of the request's headers (hyper's timeout) or
/// of progress writing the answer (the socket's).
fn timed_out(e: &hyper::Error) -> bool {
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>());
    e.is_timeout() || io.is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
}

/// After a failed accept: none for a connection the client gave up on; a moment for
/// anything else (out of descriptors: others may close), rather than a busy loop.
async fn wait_after(e: &io::Error) {
    use io::ErrorKind::*;
    if !matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{start_within, HttpArgs, Publisher};
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Instant;

    fn start(limits: Limits) -> Publisher {
        let args = HttpArgs {
            http: Some("127.0.0.1:0".parse().unwrap()),
            http_public: false,
        };
        start_within(&args, "test", limits).unwrap().unwrap()
    }

    /// Wait up to `within` for `done`.
    fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done()
    }

    /// Send `request`, read until the server closes: what it answered (empty if it reset).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(request);
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Whether the server has closed `c` (end of stream or reset), within `within`.
    fn closed(c: &mut TcpStream, within: Duration) -> bool {
        c.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match c.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            }
        }
    }

    #[test]
    fn connections_over_the_cap_are_closed_at_once_and_idle_ones_time_out() {
        let limits = Limits {
            max_connections: 8,
            header_timeout: Duration::from_secs(3),
            ..Limits::DEFAULT
        };
        let p = start(limits);
        let addr = p.local_addr();
        let t0 = Instant::now();
        let mut idle: Vec<_> = (0..58).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert!(eventually(Duration::from_secs(2), || p.counters().http_refused == 50));
        let refused = idle.split_off(8);
        for mut c in refused {
            assert!(
                closed(&mut c, Duration::from_millis(100)),
                "an extra connection is open"
            );
        }
        for c in &mut idle {
            assert!(
                !closed(c, Duration::from_millis(10)),
                "a connection within the cap was closed"
            );
        }
        assert!(t0.elapsed() < limits.header_timeout);
        // Every slot is held: a scraper is turned away until the idle ones time out.
        assert!(!exchange(addr, GET).starts_with("HTTP/1.1 200"));
        assert!(eventually(Duration::from_secs(4), || exchange(addr, GET)
            .starts_with("HTTP/1.1 200")));
        assert!(t0.elapsed() >= limits.header_timeout);
        for c in &mut idle {
            assert!(closed(c, Duration::from_secs(1)));
        }
        let counters = p.counters();
        assert_eq!((counters.http_timeouts, counters.http_bad_requests), (8, 0));
        assert!(counters.http_refused >= 51, "{counters:?}");
    }

    #[test]
    fn a_client_sending_its_headers_byte_by_byte_is_cut_off() {
        let limits = Limits {
            header_timeout: Duration::from_millis(500),
            ..Limits::DEFAULT
        };
        let p = start(limits);
        let mut c = TcpStream::connect(p.local_addr()).unwrap();
        let mut writer = c.try_clone().unwrap();
        let t0 = Instant::now();
        // Never-ending headers, a byte every 50 ms: each byte in time, the whole never.
        std::thread::spawn(move || {
            for b in b"GET / HTTP/1.1\r\nHost: x\r\n".iter().chain([b'X'; 100].iter()) {
                if writer.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        assert!(closed(&mut c, Duration::from_secs(3)));
        let after = t0.elapsed();
        assert!(
            after >= limits.header_timeout && after < Duration::from_millis(1500),
            "{after:?}"
        );
        assert!(eventually(Duration::from_secs(1), || p.counters().http_timeouts == 1));
    }

    /// A record of `pad` bytes.
    #[derive(Serialize)]
    struct Padded {
        pad: String,
    }

    impl crate::Metrics for Padded {
        fn write_metrics(&self, _: &mut MetricsWriter) {}
    }

    #[test]
    fn a_client_that_reads_no_answer_is_cut_off_and_frees_its_slot() {
        let limits = Limits {
            max_connections: 1,
            write_timeout: Duration::from_millis(500),
            ..Limits::DEFAULT
        };
        let mut p = start(limits);
        // A history of 12 MB: more than the sockets' buffers hold.
        for _ in 0..crate::server::HISTORY {
            p.publish(&Padded {
                pad: "x".repeat(40_000),
            });
        }
        let mut c = TcpStream::connect(p.local_addr()).unwrap();
        c.write_all(b"GET /history.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(!exchange(p.local_addr(), GET).starts_with("HTTP/1.1 200"));
        assert!(eventually(Duration::from_secs(3), || p.counters().http_timeouts == 1));
        assert!(exchange(p.local_addr(), GET).starts_with("HTTP/1.1 200"));
        drop(c);
    }

    #[test]
    fn request_headers_over_the_bound_are_refused_and_counted() {
        let p = start(Limits::DEFAULT);
        let addr = p.local_addr();
        let request = |cookie: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
                "c".repeat(cookie)
            )
        };
        // Served, and closed at once (no keep-alive).
        let t0 = Instant::now();
        assert!(exchange(addr, request(10_000).as_bytes()).starts_with("HTTP/1.1 200"));
        assert!(t0.elapsed() < Duration::from_secs(1));
        let answer = exchange(addr, request(Limits::DEFAULT.max_request_bytes).as_bytes());
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        assert!(eventually(Duration::from_secs(1), || p
            .counters()
            .http_bad_requests
            == 1));
        assert!(exchange(addr, b"BLAH\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(eventually(Duration::from_secs(1), || p
            .counters()
            .http_bad_requests
            == 2));
        assert_eq!(p.counters().http_timeouts + p.counters().http_refused, 0);
    }
}
