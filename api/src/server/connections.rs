//! What the server knows of each open connection: whether a request is in flight on it,
//! since when it has been idle, and a way to close it. The accept loop uses it to close
//! connections that stay idle too long, and, when every slot is taken, to close the one
//! idle the longest so that a newcomer is served instead of waiting in the kernel.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Every open connection of one server.
#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next: AtomicU64,
}

impl Connections {
    /// Registers a connection accepted now; it stays registered until the handle drops.
    pub fn register(self: &Arc<Self>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.open.lock().expect("not poisoned").insert(id, activity.clone());
        Registered { connections: self.clone(), id, activity }
    }

    /// Closes the connection that has been idle the longest (no request in flight), if
    /// any; true when one was asked to close.
    pub fn evict_idlest(&self) -> bool {
        let open = self.open.lock().expect("not poisoned");
        let idlest = open
            .values()
            .filter(|a| a.in_flight.load(Ordering::Acquire) == 0 && !a.close.is_cancelled())
            .min_by_key(|a| a.idle_since());
        match idlest {
            Some(activity) => {
                activity.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// One connection's entry in [`Connections`].
pub struct Registered {
    connections: Arc<Connections>,
    id: u64,
    pub activity: Arc<Activity>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.open.lock().expect("not poisoned").remove(&self.id);
    }
}

/// Requests in flight on one connection, and since when it has had none.
pub struct Activity {
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection was accepted).
    idle_since: Mutex<Instant>,
    /// Whether a request head ever arrived.
    served: AtomicBool,
    /// Cancelled when the server wants this connection gone.
    pub close: CancellationToken,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            served: AtomicBool::new(false),
            close: CancellationToken::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().expect("not poisoned")
    }

    /// A request head arrived: the connection is busy until the guard (and the response
    /// body that carries it) drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection becomes too idle to keep: `first_request` after accept while no
    /// request head ever arrived, `idle` after the last request ended; `None` while a
    /// request is in flight.
    pub fn idle_deadline(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let allowed = if self.served.load(Ordering::Acquire) { idle } else { first_request };
        Some(self.idle_since() + allowed)
    }
}

/// Closes the connection a request came on: a handler finds it in the request's extensions
/// when the request came through [`super::serve_bounded`]. An event stream whose client
/// stopped reading uses it, since the connection, blocked writing, would otherwise never
/// finish the response.
#[derive(Clone)]
pub struct CloseConnection(pub(super) CancellationToken);

impl CloseConnection {
    /// Asks the server to close the connection now.
    pub fn close(&self) {
        self.0.cancel();
    }
}

/// One request in flight, until its response is sent (or abandoned).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().expect("not poisoned") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is sent in full
/// (a stream of server-sent events is a request in flight for as long as it lasts).
pub struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub fn new(body: Body, in_flight: InFlight) -> Self {
        Self { body, _in_flight: in_flight }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_only_while_no_request_is_in_flight() {
        let connections = Arc::new(Connections::default());
        let accepted = Instant::now();
        let (first, second) = (connections.register(), connections.register());
        let (head, idle) = (Duration::from_secs(2), Duration::from_secs(60));
        let deadline = first.activity.idle_deadline(head, idle).expect("idle");
        assert!(
            deadline >= accepted + head && deadline <= Instant::now() + head,
            "no request yet: the head's"
        );
        let request = first.activity.begin();
        assert_eq!(first.activity.idle_deadline(head, idle), None, "busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(request);
        let deadline = first.activity.idle_deadline(head, idle).expect("idle again");
        assert!(deadline >= accepted + Duration::from_millis(20) + idle, "served once: the idle timeout");

        // The idlest is the one idle the longest with nothing in flight: `second`, never used.
        assert!(connections.evict_idlest());
        assert!(second.activity.close.is_cancelled() && !first.activity.close.is_cancelled());
        let _busy = first.activity.begin();
        assert!(!connections.evict_idlest(), "nothing idle left to close");
        drop(second);
        assert_eq!(connections.open.lock().unwrap().len(), 1);
    }
}
