//! The HTTP routes, one module per area.

pub mod channel_auth;
pub mod delivery;
pub mod events;
pub mod health;
pub mod inference;
pub mod kserve;
pub mod models;
pub mod openai;
pub mod tasks;
