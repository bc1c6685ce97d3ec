//! HTTP/1.1 on a TCP listener, with the limits `axum::serve` cannot set: a
//! cap on open connections, a deadline for each request's head, one for an
//! idle keep-alive connection, one between the chunks of a request body, and
//! graceful shutdown. Also raises the process's open-file limit at start.
//!
//! Each connection is one task. Its state (waiting for a head, in a request,
//! idle) is kept by a wrapper around the socket and one around the service;
//! the task closes the connection when the deadline of its state passes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower_http::timeout::TimeoutBody;

use crate::http::front::Front;
use crate::metrics::{ConnectionTimeout, Label, Metrics};

/// Connection limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the moment the server waits for a request (a new connection, or
    /// the first byte after an idle spell) until its head is complete.
    pub header_read_timeout: Duration,
    /// The longest wait for the next chunk of a request body.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may sit between requests.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// The most headers a request may carry, and their total size. hyper's own
/// limits are above both (100 headers, its default: a larger limit costs
/// two heap arrays per request; and a 64 KiB head), so that the requests
/// between are answered by the application, in the JSON envelope (see
/// `http::context`).
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
const HYPER_MAX_BUF: usize = 64 * 1024;

/// Descriptors kept free of connections: the database pool, the log, the
/// listener sockets.
const RESERVED_FILES: u64 = 128;

/// Raises the soft open-file limit to the hard one and logs both. Answers
/// the soft limit now in force, if it could be read.
pub fn raise_open_file_limit() -> Option<u64> {
    use rlimit::Resource;
    let (soft, hard) = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit");
        return Some(soft);
    }
    match Resource::NOFILE.set(hard, hard) {
        Ok(()) => {
            tracing::info!(soft = hard, hard, was = soft, "open-file limit raised");
            Some(hard)
        }
        Err(err) => {
            tracing::warn!(soft, hard, error = %err, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// The connection cap in force: the configured one, lowered to what the
/// open-file limit allows.
pub fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_FILES).max(1);
            let cap = configured.min(usize::try_from(room).unwrap_or(usize::MAX));
            if cap < configured {
                tracing::warn!(
                    configured,
                    cap,
                    open_file_limit = limit,
                    "the open-file limit lowers the connection cap"
                );
            }
            cap
        }
        None => configured,
    }
}

/// Serves `app` on `listener` until `stopped` turns true, then lets the
/// open connections finish their requests (idle ones close at once) and
/// returns when the last one is closed.
pub async fn serve(
    listener: TcpListener,
    app: Front,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let cap = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None).max_buf_size(HYPER_MAX_BUF);
    let http = Arc::new(http);
    loop {
        // At the cap, stop accepting: new connections wait in the backlog
        // while the open ones are served.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = stop_requested(&mut stopped) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = stop_requested(&mut stopped) => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            http: http.clone(),
            app: app.clone(),
            limits,
            metrics: metrics.clone(),
            stopped: stopped.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot until it is closed.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Resolves once `stopped` is true (or its sender is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// A failed `accept`: the connection that failed is gone; running out of
/// descriptors or memory passes, so wait a moment rather than spin.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %err, "accept failed; pausing");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    app: Front,
    limits: Limits,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, peer: SocketAddr) {
        let _open = self.metrics.connection_opened();
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let app = self.app.clone();
        let body_timeout = self.limits.body_timeout;
        let in_request = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = in_request.start_request();
            let request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
            let answer = app.serve(Some(peer), request);
            async move {
                let response = answer.await;
                drop(guard);
                response
            }
        });
        let connection = self.http.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(kind) = activity.expired(&self.limits, Instant::now()) {
                        tracing::debug!(kind = kind.as_str(), "closing a connection at its deadline");
                        self.metrics.connection_timed_out(kind);
                        return;
                    }
                }
                () = stop_requested(&mut self.stopped), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head to be complete.
    Head,
    /// At least one request is being answered.
    Busy,
    /// Between requests, nothing received yet.
    Idle,
}

struct State {
    phase: Phase,
    since: Instant,
    in_flight: usize,
}

struct Activity(Mutex<State>);

impl Activity {
    fn new() -> Activity {
        Activity(Mutex::new(State {
            phase: Phase::Head,
            since: Instant::now(),
            in_flight: 0,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived: on an idle connection, a request has begun.
    fn received(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            state.phase = Phase::Head;
            state.since = Instant::now();
        }
    }

    fn start_request(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.state();
        state.phase = Phase::Busy;
        state.in_flight += 1;
        RequestGuard(self.clone())
    }

    /// When to look again.
    fn deadline(&self, limits: &Limits) -> Instant {
        let state = self.state();
        match state.phase {
            Phase::Head => state.since + limits.header_read_timeout,
            Phase::Idle => state.since + limits.idle_timeout,
            // A request has no deadline of its own here (its body has one);
            // look again later, when it may be idle.
            Phase::Busy => Instant::now() + limits.header_read_timeout.min(limits.idle_timeout),
        }
    }

    /// Which deadline has passed, if one has.
    fn expired(&self, limits: &Limits, now: Instant) -> Option<ConnectionTimeout> {
        let state = self.state();
        match state.phase {
            Phase::Head if now >= state.since + limits.header_read_timeout => {
                Some(ConnectionTimeout::HeaderRead)
            }
            Phase::Idle if now >= state.since + limits.idle_timeout => {
                Some(ConnectionTimeout::Idle)
            }
            _ => None,
        }
    }
}

/// Marks a connection busy while a request is answered.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Idle;
            state.since = Instant::now();
        }
    }
}

/// The socket, telling `Activity` when bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_for_other_files() {
        assert_eq!(effective_max_connections(10_000, Some(1024)), 896);
        assert_eq!(effective_max_connections(100, Some(1024)), 100);
        assert_eq!(effective_max_connections(100, None), 100);
        assert_eq!(effective_max_connections(100, Some(10)), 1);
    }

    #[test]
    fn phases_and_their_deadlines() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            ..Limits::default()
        };
        let secs = Duration::from_secs;
        let activity = Arc::new(Activity::new());
        let start = activity.state().since;
        assert_eq!(activity.deadline(&limits), start + secs(2));
        assert_eq!(activity.expired(&limits, start + secs(1)), None);
        assert_eq!(
            activity.expired(&limits, start + secs(2)),
            Some(ConnectionTimeout::HeaderRead)
        );
        let guard = activity.start_request();
        assert_eq!(activity.expired(&limits, start + secs(60)), None);
        drop(guard);
        let idle_since = activity.state().since;
        assert_eq!(activity.deadline(&limits), idle_since + secs(5));
        assert_eq!(activity.expired(&limits, idle_since + secs(4)), None);
        assert_eq!(
            activity.expired(&limits, idle_since + secs(5)),
            Some(ConnectionTimeout::Idle)
        );
        // The first byte of the next request starts its head's deadline.
        activity.received();
        let head_since = activity.state().since;
        assert_eq!(activity.deadline(&limits), head_since + secs(2));
        // Bytes during a request change nothing.
        let _guard = activity.start_request();
        activity.received();
        assert_eq!(activity.expired(&limits, head_since + secs(60)), None);
    }
}
