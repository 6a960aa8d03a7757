//! What one event stream holds for its client, bounded by bytes: the events waiting for
//! the client to read them. A client that falls too far behind is cut off (its stream
//! ends and the queue is freed at once, even while the connection is still blocked
//! writing), and resumes with `Last-Event-ID`; a stalled client can never make the api
//! hold more than the budget for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use tokio::sync::Notify;

use crate::server::CloseConnection;

/// Bytes of events one stream may hold for its client.
pub const STREAM_BUFFER_BYTES: usize = 1024 * 1024;

/// The queue between a stream's producer and its response body.
pub struct Outbox {
    state: Mutex<State>,
    /// Closes the client's connection when the stream is cut off: a client that does not
    /// read leaves its connection blocked writing, so ending the body alone frees nothing.
    close: Option<CloseConnection>,
    /// Wakes the body: an event arrived, or the stream ended.
    arrived: Notify,
    /// Wakes the producer: the client took an event, or left.
    room: Notify,
    budget: usize,
}

#[derive(Default)]
struct State {
    events: VecDeque<(Event, usize)>,
    bytes: usize,
    /// No more events will come: the body ends once the queue is empty.
    finished: bool,
    /// The client fell behind: the body ends now, whatever is queued.
    cut: bool,
    /// The response body is gone (the client left).
    gone: bool,
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client left.
    Gone,
    /// The client is too far behind (and has now been cut off).
    Behind,
}

impl Outbox {
    pub fn new(budget: usize, close: Option<CloseConnection>) -> Arc<Self> {
        Arc::new(Self { state: Mutex::default(), close, arrived: Notify::new(), room: Notify::new(), budget })
    }

    fn fits(&self, state: &State, size: usize) -> bool {
        // One event larger than the whole budget still goes out, alone.
        state.events.is_empty() || state.bytes + size <= self.budget
    }

    /// Queues `event` (of `size` bytes) if the client is keeping up; cuts it off if not.
    pub fn offer(&self, event: Event, size: usize) -> Result<(), Refused> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.gone || state.cut {
            return Err(Refused::Gone);
        }
        if !self.fits(&state, size) {
            drop(state);
            self.cut();
            return Err(Refused::Behind);
        }
        state.bytes += size;
        state.events.push_back((event, size));
        drop(state);
        self.arrived.notify_one();
        Ok(())
    }

    /// Queues `event`, waiting up to `patience` for the client to make room; cuts the
    /// client off when it does not.
    pub async fn send(&self, event: Event, size: usize, patience: Duration) -> Result<(), Refused> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let state = self.state.lock().expect("not poisoned");
                if state.gone || state.cut {
                    return Err(Refused::Gone);
                }
                if self.fits(&state, size) {
                    drop(state);
                    return self.offer(event, size);
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                self.cut();
                return Err(Refused::Behind);
            }
        }
    }

    /// Ends the stream now, dropping what is queued, and closes its connection.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.cut = true;
        state.events = VecDeque::new();
        state.bytes = 0;
        drop(state);
        self.arrived.notify_one();
        if let Some(close) = &self.close {
            close.close();
        }
    }

    /// No more events: the stream ends once the client has read what is queued.
    pub fn finish(&self) {
        self.state.lock().expect("not poisoned").finished = true;
        self.arrived.notify_one();
    }

    /// Resolves when the client has left (or was cut off).
    pub async fn closed(&self) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let state = self.state.lock().expect("not poisoned");
                if state.gone || state.cut {
                    return;
                }
            }
            room.await;
        }
    }

    /// Bytes queued now.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.state.lock().expect("not poisoned").bytes
    }

    /// The events in order, for the response body; dropping it tells the producer the
    /// client left.
    pub fn events(self: Arc<Self>) -> impl Stream<Item = Event> + Send + 'static {
        let reader = Reader(self);
        futures::stream::unfold(reader, |reader| async move {
            let event = reader.next().await?;
            Some((event, reader))
        })
    }
}

/// The body's end of an [`Outbox`].
struct Reader(Arc<Outbox>);

impl Reader {
    async fn next(&self) -> Option<Event> {
        let outbox = &self.0;
        loop {
            let arrived = outbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = outbox.state.lock().expect("not poisoned");
                if state.cut {
                    return None;
                }
                if let Some((event, size)) = state.events.pop_front() {
                    state.bytes -= size;
                    drop(state);
                    outbox.room.notify_one();
                    return Some(event);
                }
                if state.finished {
                    return None;
                }
            }
            arrived.await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().expect("not poisoned");
        state.gone = true;
        state.events = VecDeque::new();
        state.bytes = 0;
        drop(state);
        self.0.room.notify_waiters();
        self.0.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn event(n: usize) -> Event {
        Event::default().data(n.to_string())
    }

    #[tokio::test]
    async fn a_client_that_keeps_up_gets_every_event_in_order_then_the_end() {
        let outbox = Outbox::new(100, None);
        let body = outbox.clone().events();
        tokio::pin!(body);
        for n in 0..5 {
            outbox.offer(event(n), 40).unwrap();
            outbox.offer(event(n), 40).unwrap();
            assert_eq!(outbox.queued_bytes(), 80);
            assert!(body.next().await.is_some() && body.next().await.is_some());
        }
        outbox.offer(event(5), 40).unwrap();
        outbox.finish();
        assert!(body.next().await.is_some(), "what was queued before the end");
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_client_past_its_budget_is_cut_off_and_its_queue_freed() {
        let outbox = Outbox::new(100, None);
        outbox.offer(event(0), 60).unwrap();
        assert_eq!(outbox.offer(event(1), 60), Err(Refused::Behind));
        assert_eq!(outbox.queued_bytes(), 0, "freed at once");
        assert_eq!(outbox.offer(event(2), 1), Err(Refused::Gone));
        let received: Vec<_> = outbox.clone().events().collect().await;
        assert!(received.is_empty(), "the stream ends without what was queued");
        outbox.closed().await;
    }

    #[tokio::test]
    async fn one_event_larger_than_the_budget_still_goes_out_alone() {
        let outbox = Outbox::new(100, None);
        outbox.offer(event(0), 500).unwrap();
        outbox.finish();
        assert_eq!(outbox.clone().events().count().await, 1);
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_gives_up_after_its_patience() {
        let outbox = Outbox::new(100, None);
        outbox.offer(event(0), 80).unwrap();
        let body = outbox.clone().events();
        tokio::pin!(body);
        let reader = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            body.next().await
        };
        let (sent, first) = tokio::join!(outbox.send(event(1), 80, Duration::from_secs(5)), reader);
        assert!(sent.is_ok() && first.is_some(), "room made by the reader");
        let stalled = outbox.send(event(2), 80, Duration::from_millis(50)).await;
        assert_eq!(stalled, Err(Refused::Behind), "nobody reads: cut off");
    }

    #[tokio::test]
    async fn the_producer_learns_that_the_client_left() {
        let outbox = Outbox::new(100, None);
        let body = outbox.clone().events();
        drop(body);
        outbox.closed().await;
        assert_eq!(outbox.offer(event(0), 1), Err(Refused::Gone));
    }
}
