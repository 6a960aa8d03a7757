//! Event logs in process memory, for in-process tests of the api's event streams; the
//! same contract as the Redis logs (an event once per task and name, ids increasing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use inferpush_protocol::TaskId;
use tokio::sync::broadcast;

use crate::StoreError;
use crate::events::{EventId, EventLog, Live, LiveFeed, LoggedEvent, Start};

/// Every event in order, and which (task, event name) are logged under which id.
type Logged = (Vec<LoggedEvent>, HashMap<(TaskId, String), EventId>);

/// Every user's events in one `Mutex`ed list.
pub struct MemoryEventLog {
    state: Mutex<Logged>,
    live: broadcast::Sender<Live>,
}

impl Default for MemoryEventLog {
    fn default() -> Self {
        Self { state: Mutex::default(), live: broadcast::channel(1024).0 }
    }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append_once(
        &self,
        user_id: &str,
        task_id: TaskId,
        event: &str,
        once: &str,
        data: &str,
    ) -> Result<EventId, StoreError> {
        let mut state = self.state.lock().expect("not poisoned");
        let (log, markers) = &mut *state;
        if let Some(id) = markers.get(&(task_id, once.to_owned())) {
            return Ok(*id);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let ms = now.as_millis() as u64;
        let id = match log.last() {
            Some(last) if last.id.ms >= ms => EventId { ms: last.id.ms, seq: last.id.seq + 1 },
            _ => EventId { ms, seq: 0 },
        };
        let logged = LoggedEvent {
            id,
            user_id: user_id.to_owned(),
            task_id,
            event: event.to_owned(),
            data: data.to_owned(),
        };
        log.push(logged.clone());
        markers.insert((task_id, once.to_owned()), id);
        let _ = self.live.send(Live::Event(Arc::new(logged)));
        Ok(id)
    }

    async fn read(&self, user_id: &str, from: Start, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let state = self.state.lock().expect("not poisoned");
        let after = |id: EventId| match from {
            Start::After(last) => id > last,
            Start::Since(ms) => id.ms >= ms,
        };
        Ok(state.0.iter().filter(|e| e.user_id == user_id && after(e.id)).take(limit).cloned().collect())
    }

    fn live(&self) -> LiveFeed {
        use futures::StreamExt;
        // Subscribed now: like a Redis feed, it opens by saying so.
        let receiver = self.live.subscribe();
        let opened = futures::stream::once(async { Live::Gap });
        Box::pin(opened.chain(futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(live) => Some((live, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Live::Gap, receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })))
    }
}
