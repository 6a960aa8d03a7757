//! The HTTP server, with the bounds an endpoint open to strangers needs:
//!
//! - a connection must bring its first complete request head within the header read
//!   timeout of being accepted, whatever the protocol (silent connections and HTTP/2
//!   prefaces with nothing after them are closed), and a connection with no request in
//!   flight is closed once idle for the idle timeout;
//! - HTTP/2 peers are pinged, and a peer that stops answering is dropped;
//! - a request must be answered within a time limit;
//! - the api holds at most so many connections at once; when all are taken, a new one
//!   closes the connection idle the longest, and only when none is idle does the api stop
//!   accepting until one closes (the flood then queues in the kernel, not in memory).

mod connections;

pub use connections::CloseConnection;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

use connections::{Connections, Tracked};

/// How often an HTTP/2 peer is pinged, and how long it has to answer.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection asked to close (idle, or evicted) may take to say goodbye.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How much of the server one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest time from accepting a connection to its first complete request head (and,
    /// on HTTP/1, from a request head's first byte to its end); past it the connection is
    /// closed.
    pub header_read_timeout: Duration,
    /// Longest time to answer a request, body included; past it the answer is a 408.
    pub request_timeout: Duration,
    /// Longest a connection stays open with no request in flight.
    pub idle_timeout: Duration,
    /// Most connections held at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets the
/// connections finish their requests.
pub async fn serve_bounded(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router =
        router.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let builder = Arc::new(builder);
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let connections = Arc::new(Connections::default());
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors or similar: wait a moment, do not spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Every slot is taken: the idlest connection makes room, if there is one.
                if connections.evict_idlest() {
                    tracing::debug!("at the connection limit: closed the connection idle the longest");
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let registered = connections.register();
        let activity = registered.activity.clone();
        let service = {
            let (router, activity) = (router.clone(), activity.clone());
            tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                request.extensions_mut().insert(CloseConnection(activity.close.clone()));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(Body::new)).await?;
                    Ok::<_, Infallible>(response.map(|body| Body::new(Tracked::new(body, in_flight))))
                }
            })
        };
        let (builder, stopping) = (builder.clone(), stopping.clone());
        tokio::spawn(async move {
            let connection =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(connection);
            // Until the connection ends by itself, or is too idle, evicted, or the server stops.
            let server_stops = loop {
                let idle_deadline = activity.idle_deadline(limits.header_read_timeout, limits.idle_timeout);
                let too_idle = async {
                    match idle_deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        // Busy: look again once the request may have ended.
                        None => tokio::time::sleep(limits.idle_timeout.min(Duration::from_secs(1))).await,
                    }
                };
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(error) = ended {
                            tracing::debug!(error = %error, "connection ended with an error");
                        }
                        drop((registered, slot));
                        return;
                    }
                    () = stopping.cancelled() => break true,
                    () = activity.close.cancelled() => break false,
                    () = too_idle => {
                        let still_idle = activity
                            .idle_deadline(limits.header_read_timeout, limits.idle_timeout)
                            .is_some_and(|deadline| deadline <= tokio::time::Instant::now());
                        if still_idle {
                            break false;
                        }
                    }
                }
            };
            connection.as_mut().graceful_shutdown();
            if server_stops {
                // Requests in flight finish (each within the request timeout; event streams
                // end when the replica closes them).
                let _ = connection.await;
            } else {
                // Nothing in flight: say goodbye (HTTP/2's GOAWAY), then drop it.
                let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
            }
            drop((registered, slot));
        });
    }
    drop(listener);
    // Every connection finishes, then gives back its slot.
    stopping.cancel();
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}
