//! The HTTP endpoint of `--http ADDR:PORT`: `/metrics` (Prometheus text), `/stats.json`
//! (the latest record), `/history.json` (the last [`HISTORY`] records), `/events`
//! (server-sent events: each new record as it is made) and `/`, the dashboard.
//!
//! Built on axum (hyper and tower underneath, the tokio team's own HTTP stack): the
//! binaries already run on tokio, axum has server-sent events built in, and it is among
//! the most used and best kept Rust HTTP servers. It runs on a thread and a current-thread
//! runtime of its own, started before any thread is given real-time priority, so a slow
//! or hostile HTTP client costs the audio and network threads nothing: the control
//! thread's only contact is [`Publisher::publish`] once a second, which renders the record
//! and swaps it in under a mutex held for a pointer copy.
//!
//! Off by default; an address that is not loopback is refused unless `--http-public`
//! says so, since anyone who reaches the port reads the stats (addresses, SSRCs) with no
//! authentication.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde::Serialize;

use crate::metrics::{Metrics, MetricsWriter};

/// Records kept for a dashboard that opens: five minutes at one a second.
pub const HISTORY: usize = 300;

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
    count: u64,
}

impl Publisher {
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
}

/// Start the endpoint if `--http` asks for it: bind now (so a bad address fails at
/// start), serve on a thread of its own.
pub fn start(args: &HttpArgs, program: &str) -> Result<Option<Publisher>, String> {
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
    let shared = Arc::new(Shared {
        latest: Mutex::new(Latest::default()),
        changed: tokio::sync::watch::Sender::new(0),
    });
    let app = Router::new()
        .route("/", get(|| async { Html(DASHBOARD_HTML) }))
        .route("/metrics", get(metrics))
        .route("/stats.json", get(stats))
        .route("/history.json", get(history))
        .route("/events", get(events))
        .with_state(shared.clone());
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
                        axum::serve(l, app).await.map_err(|e| e.to_string())
                    })
                });
            if let Err(e) = served {
                eprintln!("{name}: --http stopped: {e}");
            }
        })
        .map_err(|e| format!("--http: cannot start its thread: {e}"))?;
    Ok(Some(Publisher { shared, count: 0 }))
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

async fn events(State(s): State<Arc<Shared>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.changed.subscribe();
    let stream = futures_util::stream::unfold((rx, s), |(mut rx, s)| async move {
        rx.changed().await.ok()?;
        let json = s.read(|l| l.json.clone());
        Some((Ok(Event::default().data(&*json)), (rx, s)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
