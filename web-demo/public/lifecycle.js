// The task lifecycle as the page needs it: the states, which are final, and the event
// each state is announced with. A copy of inferpush_protocol::lifecycle (the Rust
// definition); integration-tests/tests/clients.rs checks that the two agree.

/** Every state, in lifecycle order. */
export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'];

/** States nothing moves a task out of. */
export const FINAL_STATUSES = ['succeeded', 'failed', 'cancelled', 'expired'];

/** The event that announces each state on the owner's channel (queued has none). */
export const EVENT_FOR_STATUS = {
  running: 'inference.started',
  succeeded: 'inference.completed',
  failed: 'inference.failed',
  cancelled: 'inference.failed',
  expired: 'inference.failed',
};

/** The event names to bind. */
export const EVENTS = {
  started: 'inference.started',
  completed: 'inference.completed',
  failed: 'inference.failed',
  delta: 'inference.delta',
};

export const isFinal = (status) => FINAL_STATUSES.includes(status);
