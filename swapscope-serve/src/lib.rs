//! The Prometheus exporter behind `swapscope serve` (docs/fleet.md): an HTTP/1 server (hyper on
//! a tokio runtime of its own thread) that renders the analysis' newest [`Snapshot`] at each
//! scrape. The event path never waits for it: scrapes only read the `Arc` the analysis thread
//! publishes ([`Shared`]), so a slow, stuck or abusive client costs a connection slot, never
//! collection.
//!
//! Limits a client meets: at most [`ServeConfig::max_connections`] connections at once, request
//! headers within [`ServeConfig::header_timeout`] and 16 KiB, and a connection lives at most
//! [`ServeConfig::connection_lifetime`]. Idle sockets never lock a scraper out (hostile #21
//! class 3): when every slot is taken, a new connection closes the connection that has been idle
//! longest (no request for [`EVICTABLE_AFTER`]: one that never sent a request, a keep-alive
//! between requests, a slow sender still on its headers) and takes its slot; only when every
//! slot is answering a request does it wait, at most `header_timeout`, and at most
//! [`PENDING_PER_SLOT`] × `max_connections` wait at once (more are closed at accept).
//!
//! The server binds at [`Server::start`] (a taken port fails there) but answers only once the
//! analysis published its first counter sample (at most [`ServeConfig::ready_within`] later):
//! a scrape at start waits in the kernel's backlog instead of getting a page without the
//! kernel's families.
//!
//! [`Snapshot`]: crate::sink::snapshot::Snapshot

// Core's and the probe side's modules under the paths this crate's modules name them by
// (`crate::event`, ...).
use swapscope_core::{engine, sink};
use swapscope_probe::host;

pub mod metrics;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
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
    /// How long the server waits, before answering anything, for the analysis' first counter
    /// sample.
    pub ready_within: Duration,
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
            ready_within: Duration::from_secs(5),
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
    conns: Conns,
}

impl State {
    fn new(cfg: ServeConfig, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(State {
            cfg,
            shared,
            scrapes: AtomicU64::new(0),
            conns: Conns::new(),
        })
    }
}

/// A connection idle this long (no request begun) may be closed for a new one when every slot
/// is taken. Long beyond the time to answer a scrape (rendering and writing take milliseconds),
/// short against a scraper's interval.
pub const EVICTABLE_AFTER: Duration = Duration::from_millis(250);

/// Connections that may wait for a slot at once, per slot.
pub const PENDING_PER_SLOT: usize = 4;

/// One open connection, as the accept side sees it.
struct Conn {
    /// When it was accepted or last began a request, in ms since the server started.
    active_ms: AtomicU64,
    /// Chosen to be closed (so two newcomers never pick the same one).
    closing: AtomicBool,
    close: tokio::sync::Notify,
}

/// The open connections, to find the one idle longest.
struct Conns {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Conns {
    fn new() -> Self {
        Conns {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn {
            active_ms: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        self.lock().insert(id, c.clone());
        (id, c)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle longest, if idle for [`EVICTABLE_AFTER`], to close; whether
    /// one was.
    fn evict_idlest(&self) -> bool {
        let now = self.now_ms();
        let min_idle = u64::try_from(EVICTABLE_AFTER.as_millis()).unwrap_or(u64::MAX);
        let open = self.lock();
        let victim = open
            .values()
            .filter(|c| !c.closing.load(Ordering::Relaxed))
            .map(|c| (c.active_ms.load(Ordering::Relaxed), c))
            .filter(|(at, _)| now.saturating_sub(*at) >= min_idle)
            .min_by_key(|(at, _)| *at)
            .map(|(_, c)| c.clone());
        drop(open);
        match victim {
            Some(c) if !c.closing.swap(true, Ordering::Relaxed) => {
                c.close.notify_one();
                true
            }
            _ => false,
        }
    }
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
        let state = State::new(cfg, shared);
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
    // Nothing is answered before the first counter sample (connections wait in the backlog).
    let ready_by = Instant::now() + state.cfg.ready_within;
    while !state.shared.has_counters() && Instant::now() < ready_by {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(state.cfg.max_connections));
    let pending = Arc::new(tokio::sync::Semaphore::new(
        state.cfg.max_connections.saturating_mul(PENDING_PER_SLOT),
    ));
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
        // Too many already waiting for a slot: closed at once (the client sees a reset).
        let Ok(waiting) = pending.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        tokio::spawn(connection(stream, state.clone(), slots.clone(), waiting));
    }
}

/// Takes a slot for a new connection (closing the idlest one if all are taken, waiting while
/// every slot answers a request) and serves it.
async fn connection(
    stream: tokio::net::TcpStream,
    st: Arc<State>,
    slots: Arc<tokio::sync::Semaphore>,
    waiting: tokio::sync::OwnedSemaphorePermit,
) {
    let give_up = tokio::time::Instant::now() + st.cfg.header_timeout;
    let permit = loop {
        if let Ok(p) = slots.clone().try_acquire_owned() {
            break p;
        }
        st.conns.evict_idlest();
        let wait = tokio::time::timeout(Duration::from_millis(50), slots.clone().acquire_owned());
        match wait.await {
            Ok(Ok(p)) => break p,
            Ok(Err(_)) => return,
            Err(_) if tokio::time::Instant::now() >= give_up => return,
            Err(_) => {}
        }
    };
    drop(waiting);
    let (id, me) = st.conns.add();
    let lifetime = st.cfg.connection_lifetime;
    let service = {
        let st = st.clone();
        let me = me.clone();
        service_fn(move |req| {
            me.active_ms.store(st.conns.now_ms(), Ordering::Relaxed);
            let st = st.clone();
            async move { Ok::<_, Infallible>(respond(&req, &st)) }
        })
    };
    let conn = http1_builder(&st.cfg).serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = me.close.notified() => {}
        () = tokio::time::sleep(lifetime) => {}
    }
    st.conns.remove(id);
    drop(permit);
}

/// HTTP/1 as every connection gets it: headers within the timeout and 16 KiB, keep-alive.
fn http1_builder(cfg: &ServeConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(16 << 10)
        .keep_alive(true);
    builder
}

/// What the server writes back to a client that sent `input` and then closed its side: the
/// request path as a connection runs it (the same HTTP/1 settings and handler, half-closes
/// answered), over an in-memory stream, for the fuzz target `fuzz/fuzz_targets/http_request.rs`. At most 1 s.
#[doc(hidden)]
pub fn answer_raw(input: &[u8], shared: Arc<Shared>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Vec::new();
    };
    let cfg = ServeConfig {
        header_timeout: Duration::from_millis(200),
        ..ServeConfig::default()
    };
    let st = State::new(cfg, shared);
    let input = input.to_vec();
    rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let service = {
            let st = st.clone();
            service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(respond(&req, &st)) }
            })
        };
        // The client closes its side after the request; told to answer anyway (a real
        // connection that half-closes is dropped at once), the server parses and answers it.
        let conn = http1_builder(&st.cfg)
            .half_close(true)
            .serve_connection(TokioIo::new(server), service);
        let talk = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let both = async {
            let (out, _) = tokio::join!(talk, conn);
            out
        };
        tokio::time::timeout(Duration::from_secs(1), both)
            .await
            .unwrap_or_default()
    })
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
