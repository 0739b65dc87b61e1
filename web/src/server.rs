//! The HTTP endpoint of `--http ADDR:PORT`: `/metrics` (Prometheus text), `/stats.json`
//! (the latest record), `/history.json` (the last [`HISTORY`] records), `/events`
//! (server-sent events: each new record as it is made, and between them, ten times a
//! second, `levels` events for the meters) and `/`, the dashboard.
//!
//! Built on axum (hyper and tower underneath, the tokio team's own HTTP stack): the
//! binaries already run on tokio, axum has server-sent events built in, and it is among
//! the most used and best kept Rust HTTP servers. It runs on a thread and a current-thread
//! runtime of its own, started before any thread is given real-time priority, so a slow
//! or hostile HTTP client costs the audio and network threads nothing: the control
//! thread's only contact is [`Publisher::publish`] once a second and
//! [`Publisher::publish_levels`] ten times a second, each rendering its JSON first and
//! then swapping it in under a lock held for a few pointer copies.
//!
//! Off by default; an address that is not loopback is refused unless `--http-public`
//! says so, since anyone who reaches the port reads the stats (addresses, SSRCs) with no
//! authentication. Memory is bounded: [`HISTORY`] records, at most [`MAX_EVENT_CLIENTS`]
//! event streams open at once (more are answered 503), and the connections themselves
//! are capped, timed and counted ([`crate::connections`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::connections::{self, Counters, HttpCounters, Limits};
use crate::metrics::{Metrics, MetricsWriter};

/// Records kept for a dashboard that opens: five minutes at one a second.
pub const HISTORY: usize = 300;

/// Dashboards (event streams) served at once.
pub const MAX_EVENT_CLIENTS: usize = 16;

/// The dashboard page (also the report's, with the records written in).
pub const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");

/// `--http` and `--http-public`, the same on both binaries.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HttpArgs {
    /// Serve Prometheus metrics (/metrics), the stats (/stats.json) and a live dashboard
    /// (/) over HTTP on ADDR:PORT, e.g. 127.0.0.1:9900. Off by default. A loopback
    /// address only, unless --http-public.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,
    /// Let --http listen on an address that is not loopback: anyone who reaches it reads
    /// the stats (senders' addresses, SSRCs); there is no authentication.
    #[arg(long, requires = "http")]
    pub http_public: bool,
}

#[derive(Default)]
struct Latest {
    json: Arc<str>,
    metrics: Arc<str>,
    history: VecDeque<Arc<str>>,
}

struct Shared {
    latest: Mutex<Latest>,
    changed: tokio::sync::watch::Sender<u64>,
    /// The latest levels (JSON), for the meters between records.
    levels: tokio::sync::watch::Sender<Arc<str>>,
    /// Event streams open now.
    clients: AtomicUsize,
}

/// One open event stream, counted while it lives.
struct Client(Arc<Shared>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn read<R>(&self, f: impl FnOnce(&Latest) -> R) -> R {
        match self.latest.lock() {
            Ok(l) => f(&l),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// The control thread's handle: each record published is what the endpoint serves next.
pub struct Publisher {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    count: u64,
    local: SocketAddr,
}

impl Publisher {
    /// Where the endpoint listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What the endpoint refused so far, for the stats record.
    pub fn counters(&self) -> HttpCounters {
        self.counters.read()
    }

    /// Render `stats` (JSON and metrics) and make it the latest record.
    pub fn publish<T: Serialize + Metrics>(&mut self, stats: &T) {
        let Ok(json) = serde_json::to_string(stats) else {
            return;
        };
        let mut m = MetricsWriter::default();
        stats.write_metrics(&mut m);
        let json: Arc<str> = json.into();
        let metrics: Arc<str> = m.finish().into();
        {
            let mut l = match self.shared.latest.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            if l.history.len() == HISTORY {
                l.history.pop_front();
            }
            l.history.push_back(json.clone());
            l.json = json;
            l.metrics = metrics;
        }
        self.count += 1;
        self.shared.changed.send_replace(self.count);
    }

    /// Hand the meters their levels (sent to open dashboards only, not kept).
    pub fn publish_levels<T: Serialize>(&self, levels: &T) {
        if let Ok(json) = serde_json::to_string(levels) {
            self.shared.levels.send_replace(json.into());
        }
    }
}

/// Start the endpoint if `--http` asks for it: bind now (so a bad address fails at
/// start), serve on a thread of its own.
pub fn start(args: &HttpArgs, program: &str) -> Result<Option<Publisher>, String> {
    start_within(args, program, Limits::DEFAULT)
}

/// [`start`], with other limits (the tests').
pub(crate) fn start_within(
    args: &HttpArgs,
    program: &str,
    limits: Limits,
) -> Result<Option<Publisher>, String> {
    let Some(addr) = args.http else {
        return Ok(None);
    };
    if !addr.ip().to_canonical().is_loopback() && !args.http_public {
        return Err(format!(
            "--http {addr}: not a loopback address; the stats would be open to the network without authentication (add --http-public if that is meant, or use 127.0.0.1)"
        ));
    }
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("--http: cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("--http: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("--http: {e}"))?;
    let shared = Arc::new(Shared {
        latest: Mutex::new(Latest::default()),
        changed: tokio::sync::watch::Sender::new(0),
        levels: tokio::sync::watch::Sender::new(Arc::from("")),
        clients: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/", get(|| async { Html(DASHBOARD_HTML) }))
        .route("/metrics", get(metrics))
        .route("/stats.json", get(stats))
        .route("/history.json", get(history))
        .route("/events", get(events))
        .with_state(shared.clone());
    let counters = Arc::new(Counters::default());
    let counting = counters.clone();
    let name = program.to_string();
    std::thread::Builder::new()
        .name("patchcord-http".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(async {
                        let l = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                        connections::serve(l, app, limits, counting).await;
                        Ok(())
                    })
                });
            if let Err(e) = served {
                say!("{name}: --http stopped: {e}");
            }
        })
        .map_err(|e| format!("--http: cannot start its thread: {e}"))?;
    Ok(Some(Publisher {
        shared,
        counters,
        count: 0,
        local,
    }))
}

/// No record yet: the first comes a second after the start.
fn not_yet() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "no stats yet\n").into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let text = s.read(|l| l.metrics.clone());
    if text.is_empty() {
        return not_yet();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let json = s.read(|l| l.json.clone());
    if json.is_empty() {
        return not_yet();
    }
    ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
}

async fn history(State(s): State<Arc<Shared>>) -> Response {
    let all = s.read(|l| l.history.iter().cloned().collect::<Vec<_>>());
    let body = format!("[{}]", all.join(","));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn events(State(s): State<Arc<Shared>>) -> Response {
    if s.clients.fetch_add(1, Ordering::Relaxed) >= MAX_EVENT_CLIENTS {
        s.clients.fetch_sub(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many dashboards open\n").into_response();
    }
    let client = Client(s.clone());
    let (records, levels) = (s.changed.subscribe(), s.levels.subscribe());
    let stream = futures_util::stream::unfold(
        (records, levels, client),
        |(mut records, mut levels, client)| async move {
            let event = tokio::select! {
                r = records.changed() => {
                    r.ok()?;
                    Event::default().data(&*client.0.read(|l| l.json.clone()))
                }
                r = levels.changed() => {
                    r.ok()?;
                    let json = levels.borrow_and_update().clone();
                    Event::default().event("levels").data(&*json)
                }
            };
            Some((Ok::<_, Infallible>(event), (records, levels, client)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[derive(Serialize)]
    struct Record {
        t: u32,
    }

    impl Metrics for Record {
        fn write_metrics(&self, m: &mut MetricsWriter) {
            m.family("test_t", "t", false, &[(vec![], self.t as f64)]);
        }
    }

    /// Send a GET, read until the headers (and, with `whole`, the body) are in.
    fn get(addr: SocketAddr, path: &str, whole: bool) -> (TcpStream, String) {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let close = if whole { "Connection: close\r\n" } else { "" };
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n").unwrap();
        let mut text = String::new();
        if whole {
            c.read_to_string(&mut text).unwrap();
        } else {
            let mut buf = [0u8; 4096];
            while !text.contains("\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "closed: {text}");
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        (c, text)
    }

    #[test]
    fn serves_the_latest_record_its_history_and_bounded_event_streams() {
        let args = HttpArgs {
            http: Some("127.0.0.1:0".parse().unwrap()),
            http_public: false,
        };
        let mut p = start(&args, "test").unwrap().unwrap();
        let addr = p.local_addr();
        assert!(get(addr, "/stats.json", true).1.starts_with("HTTP/1.1 503"));
        for t in 0..(HISTORY as u32 + 5) {
            p.publish(&Record { t });
        }
        let last = HISTORY as u32 + 4;
        assert!(get(addr, "/stats.json", true)
            .1
            .ends_with(&format!("{{\"t\":{last}}}")));
        let metrics = get(addr, "/metrics", true).1;
        assert!(
            metrics.contains("text/plain; version=0.0.4") && metrics.ends_with(&format!("test_t {last}\n"))
        );
        let history = get(addr, "/history.json", true).1;
        assert!(history.contains("[{\"t\":5},") && history.matches("\"t\"").count() == HISTORY);
        let page = get(addr, "/", true).1;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("new EventSource(\"events\")"));
        let open: Vec<_> = (0..MAX_EVENT_CLIENTS)
            .map(|_| get(addr, "/events", false))
            .collect();
        assert!(open.iter().all(|(_, h)| h.contains("text/event-stream")));
        assert!(get(addr, "/events", true).1.starts_with("HTTP/1.1 503"));
    }

    #[test]
    fn refuses_an_address_beyond_loopback_unless_public() {
        let args = |a: &str, public| HttpArgs {
            http: Some(a.parse().unwrap()),
            http_public: public,
        };
        let e = start(&args("0.0.0.0:0", false), "test").err().unwrap();
        assert!(
            e.contains("not a loopback address") && e.contains("--http-public"),
            "{e}"
        );
        assert!(start(&args("[::ffff:10.0.0.1]:0", false), "test").is_err());
        assert!(start(&args("127.0.0.1:0", false), "test").is_ok_and(|p| p.is_some()));
        assert!(start(&HttpArgs::default(), "test").is_ok_and(|p| p.is_none()));
    }
}
