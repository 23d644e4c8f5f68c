//! The Prometheus exporter behind `swapscope serve` (docs/fleet.md): an HTTP/1 server (hyper on
//! a tokio runtime of its own thread) that renders the analysis' newest [`Snapshot`] at each
//! scrape. The event path never waits for it: scrapes only read the `Arc` the analysis thread
//! publishes ([`Shared`]), so a slow, stuck or abusive client costs a connection slot, never
//! collection.
//!
//! Limits a client meets: at most [`ServeConfig::max_connections`] connections at once (more are
//! closed at accept), request headers within [`ServeConfig::header_timeout`] and 16 KiB, and a
//! connection lives at most [`ServeConfig::connection_lifetime`].
//!
//! [`Snapshot`]: crate::sink::snapshot::Snapshot

// Core's and the probe side's modules under the paths this crate's modules name them by
// (`crate::event`, ...).
use swapscope_core::{engine, sink};
use swapscope_probe::host;

pub mod metrics;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::sink::analysis::Shared;
use metrics::{Format, ServeStats};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {cause}{hint}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
        hint: &'static str,
    },
    #[error("starting the HTTP server: {0}")]
    Start(std::io::Error),
}

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_lifetime: Duration,
    /// `/healthz` fails when the newest snapshot is older than this (a stuck pipeline).
    pub stale_after: Duration,
    /// swapscope's version, for `swapscope_info`.
    pub version: String,
    /// The host's page size in bytes.
    pub page_size: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9866)),
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(120),
            stale_after: Duration::from_secs(10),
            version: env!("CARGO_PKG_VERSION").to_string(),
            page_size: 4096,
        }
    }
}

/// What every request handler sees.
struct State {
    cfg: ServeConfig,
    shared: Arc<Shared>,
    scrapes: AtomicU64,
}

/// A running server; [`Server::stop`] (or drop) shuts it down.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `cfg.listen` now (so a taken port is an error before anything else starts) and
    /// serves from a thread of its own.
    pub fn start(cfg: ServeConfig, shared: Arc<Shared>) -> Result<Self, ServeError> {
        let listener = std::net::TcpListener::bind(cfg.listen).map_err(|cause| {
            let hint = match cause.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (address in use: is another swapscope serve running? pass --listen with another port)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (ports below 1024 need CAP_NET_BIND_SERVICE: pass --listen with a higher port)"
                }
                std::io::ErrorKind::AddrNotAvailable => {
                    " (no such address on this host: pass --listen with one of its addresses)"
                }
                _ => "",
            };
            ServeError::Bind {
                addr: cfg.listen,
                cause,
                hint,
            }
        })?;
        listener.set_nonblocking(true).map_err(ServeError::Start)?;
        let addr = listener.local_addr().map_err(ServeError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Start)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(State {
            cfg,
            shared,
            scrapes: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("swapscope-serve".into())
            .spawn(move || runtime.block_on(accept_loop(listener, state, rx)))
            .map_err(ServeError::Start)?;
        Ok(Server {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Where it listens (the port chosen, when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections and waits for the server thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(state.cfg.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            // EMFILE and the like: back off a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Over the limit: closed at once (the client sees a reset, collection goes on).
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let st = state.clone();
        tokio::spawn(async move {
            let lifetime = st.cfg.connection_lifetime;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(st.cfg.header_timeout)
                .max_buf_size(16 << 10)
                .keep_alive(true);
            let service = service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(respond(&req, &st)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(lifetime, conn).await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn respond(req: &Request<Incoming>, st: &State) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let scrapes = st.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
            let snap = st.shared.latest();
            let stats = ServeStats {
                version: st.cfg.version.clone(),
                scrapes,
                snapshot_age_s: st.shared.age().map_or(0.0, |a| a.as_secs_f64()),
                process: host::process_stats(),
                page_size: st.cfg.page_size,
            };
            match metrics::render(&snap, &stats, format) {
                Ok(body) => {
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(format.content_type()),
                    );
                    r
                }
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
            }
        }
        "/healthz" => {
            let snap = st.shared.latest();
            match st.shared.age() {
                Some(age) if snap.ended => text(
                    StatusCode::OK,
                    format!("ok: the stream ended {:.0} s ago\n", age.as_secs_f64()),
                ),
                Some(age) if age <= st.cfg.stale_after => text(StatusCode::OK, "ok\n"),
                Some(age) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "stale: the analysis published nothing for {:.0} s\n",
                        age.as_secs_f64()
                    ),
                ),
                None => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            }
        }
        "/" => text(
            StatusCode::OK,
            "swapscope serve: metrics at /metrics, health at /healthz\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}

#[cfg(test)]
mod tests;
