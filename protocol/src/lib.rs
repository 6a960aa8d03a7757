//! Types and rules shared by the inferpush api, worker, store and clients.
//!
//! Pure: no sockets, no command line, no clock read behind the caller's back. The api
//! and the worker agree on the wire through these types, apply one task lifecycle
//! ([`lifecycle`]), validate against the model repository's cards ([`catalogue`]), and sign Pusher
//! requests through the same functions, so they cannot drift apart.

pub mod catalogue;
pub mod channel;
pub mod clock;
pub mod deadline;
pub mod delivery;
pub mod encryption;
pub mod envelope;
pub mod event;
pub mod http;
pub mod kserve;
pub mod lifecycle;
pub mod openai;
pub mod record;
pub mod signature;
pub mod topology;
pub mod webhook;

pub use channel::{ChannelError, ChannelKind, InferenceChannel};
pub use clock::{Clock, ManualClock, SystemClock};
pub use deadline::CancelAfter;
pub use delivery::{Delivery, SinkKind, WebhookEvent, WebhookTargets};
pub use envelope::{TaskEnvelope, TaskId};
pub use event::{DeltaEvent, ErrorBody, InferenceEvent, TaskProgress, Timings};
pub use lifecycle::{EventName, TaskStatus};
pub use record::{Provenance, TaskRecord};
pub use signature::{AppCredentials, RestRequest, SignatureError};
pub use topology::{Lane, Topology};
