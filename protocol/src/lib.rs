//! Types and signatures shared by the inferpush api and worker.
//!
//! The core is pure: no sockets, no clocks read behind the caller's back. The api and
//! the worker agree on the wire through these types, and both sign Pusher requests
//! through these functions, so they cannot drift apart. Two optional features add the
//! clap argument groups both binaries share (`cli`) and the one routine that declares
//! the queue topology on a broker (`amqp`).

pub mod catalogue;
pub mod channel;
#[cfg(feature = "cli")]
pub mod cli;
pub mod encryption;
pub mod envelope;
pub mod event;
pub mod record;
pub mod signature;
pub mod topology;

pub use channel::{ChannelError, ChannelKind, InferenceChannel};
pub use envelope::{TaskEnvelope, TaskId};
pub use event::{ErrorBody, EventName, InferenceEvent, TaskStatus, Timings};
pub use record::TaskRecord;
pub use signature::{AppCredentials, RestRequest, SignatureError};
pub use topology::Topology;
