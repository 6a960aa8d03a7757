//! Task state and results in Redis, shared by the api (which records `queued`) and the
//! worker (which moves tasks forward). Every change is one Lua script, so a state
//! only ever advances — queued → running → succeeded | failed | cancelled — and a
//! redelivered task can never overwrite a finished one.

mod keys;
mod scripts;
mod task_store;

pub use keys::Keys;
pub use task_store::{Created, StoreError, TaskStore, Transition};
