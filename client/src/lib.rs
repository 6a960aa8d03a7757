//! A Rust client of inferpush: the HTTP api ([`api`]) and a Pusher Channels WebSocket
//! client ([`pusher`]) that speaks protocol 7 as pusher-js does, and the text of a
//! streamed generation as deltas build it ([`transcript`]). The `inferpush` command line and
//! the end-to-end tests are built on it.

pub mod api;
pub mod pusher;
pub mod transcript;
