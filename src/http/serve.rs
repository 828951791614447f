//! Serving the router on a TCP listener, with the bounds that keep idle and half-sent
//! connections from holding the appliance (issue 13, part 5):
//!
//! - a client has `header_read_timeout` to send a request's headers; the same timer runs while
//!   a kept-alive connection waits for its next request (hyper starts it whenever it waits for a
//!   request head), so an idle connection is closed after it too;
//! - a request body that sends nothing for `body_idle_timeout` is abandoned;
//! - at most `max_connections` connections are served at once: each holds a permit of one
//!   semaphore, and a connection accepted without one is answered 503 and closed at once, so
//!   the excess neither waits in the kernel's backlog nor takes a file descriptor for long.
//!
//! Neither timeout runs while an answer is being written: a long image download with Range to a
//! deploying machine is never cut. On shutdown the listener closes, every connection is told to
//! finish its request in flight and close, and `serve` returns when all permits are back.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The bounds on connections (`[http]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to send a request's headers, and the longest idle wait between two requests.
    pub header_read_timeout: Duration,
    /// The longest a request body may send nothing.
    pub body_idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// What a connection beyond the cap is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 43\r\nConnection: close\r\n\r\ntoo many connections; try again in a moment";

/// Serves `app` on `listener` until `shutdown` completes, then waits for the connections in
/// flight to finish. Each request carries `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(permits as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let refused = Refused::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // Out of file descriptors (EMFILE) or a connection that went away before it was
                // accepted: wait a little rather than spin, and go on.
                tracing::warn!(%error, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.note(limits.max_connections);
            // Best effort: the socket is fresh, so the answer fits its send buffer.
            let _ = stream.try_write(FULL);
            drop(stream);
            continue;
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is done.
    let _ = slots.acquire_many(permits).await;
}

/// Counts connections refused at the cap, and says so in the log at most every 10 s.
#[derive(Default)]
struct Refused {
    count: AtomicU64,
    last_logged: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Refused {
    fn note(&self, cap: usize) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::Instant::now();
        let Ok(mut last) = self.last_logged.lock() else {
            return;
        };
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            *last = Some(now);
            tracing::warn!(
                max_connections = cap,
                refused_so_far = count,
                "HTTP connection refused: the connection cap is reached (http.max_connections)"
            );
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let idle = limits.body_idle_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|body| Body::new(IdleBody::new(body, idle)));
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    // Header timeouts, resets and half-sent requests: the client's doing.
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                // Told to stop (or the server is gone): finish the request in flight, then close.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The request body `body_idle_timeout` expired on.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?} (http.body_idle_timeout_secs)")]
pub(crate) struct BodyIdle(Duration);

/// A request body that fails when no frame arrives for `idle`.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    /// Armed while a frame is awaited; reset when one arrives.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            timer: None,
        }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
