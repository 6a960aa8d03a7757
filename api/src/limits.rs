//! Per-user limits: rate limits (token buckets, via governor) on submit, channel auth and
//! listing, and bounds on what one user may hold open at once on one replica (event
//! streams, requests waiting for their result).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

/// One token bucket per user.
pub struct UserLimit {
    limiter: DefaultKeyedRateLimiter<String>,
    what: &'static str,
}

impl UserLimit {
    /// `per_second` tokens refill each second, up to `burst`; `what` names the action in errors.
    pub fn new(what: &'static str, per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Self { limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)), what }
    }

    /// Takes one token for `user`, or says how long to wait.
    pub fn check(&self, user: &str) -> Result<(), AppError> {
        self.limiter.check_key(&user.to_owned()).map_err(|not_until| {
            crate::metrics::rate_limited(self.what);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.max(Duration::from_secs(1)).as_secs_f64().ceil() as u64;
            AppError::TooManyRequests {
                detail: format!("too many {} requests; retry in {seconds} s", self.what),
                seconds,
            }
        })
    }

    /// Forgets buckets that are full again, so memory tracks active users only.
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The limits of the api.
pub struct Limits {
    /// `POST /v1/inference`.
    pub submit: UserLimit,
    /// `POST /pusher/auth`, `POST /broadcasting/auth`.
    pub auth: UserLimit,
    /// `GET /v1/inference?since=…`.
    pub list: UserLimit,
    /// Requests waiting for their task's result (`Prefer: wait`, `/v1/embeddings`).
    pub waits: UserSlots,
}

impl Limits {
    /// Forgets the buckets of users who are idle again.
    pub fn shrink(&self) {
        self.submit.shrink();
        self.auth.shrink();
        self.list.shrink();
    }
}

/// How many of something each user holds open on this replica, bounded, so one caller
/// cannot hold every connection.
pub struct UserSlots {
    open: Arc<Mutex<HashMap<String, usize>>>,
    max: usize,
}

/// One held slot, counted until dropped.
pub struct UserSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    user_id: String,
}

impl UserSlots {
    /// At most `max` (at least one) per user.
    pub fn new(max: usize) -> Self {
        Self { open: Arc::default(), max: max.max(1) }
    }

    /// A slot for one more of `user_id`'s, unless they hold the most already.
    pub fn open(&self, user_id: &str) -> Option<UserSlot> {
        let mut open = self.open.lock().expect("not poisoned");
        let count = open.entry(user_id.to_owned()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(UserSlot { open: self.open.clone(), user_id: user_id.to_owned() })
    }

    /// The most one user may hold.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("not poisoned");
        if let Some(count) = open.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_their_slots_and_closing_one_frees_it() {
        let slots = UserSlots::new(2);
        let (a, _b) = (slots.open("alice").unwrap(), slots.open("alice").unwrap());
        assert!(slots.open("alice").is_none());
        assert!(slots.open("bob").is_some(), "per user");
        drop(a);
        assert!(slots.open("alice").is_some());
    }

    #[test]
    fn the_burst_passes_then_the_next_request_waits() {
        let limit = UserLimit::new("submit", 1, 3);
        for _ in 0..3 {
            assert!(limit.check("alice").is_ok());
        }
        match limit.check("alice") {
            Err(AppError::TooManyRequests { seconds, .. }) => assert!(seconds >= 1),
            other => panic!("{other:?}"),
        }
        assert!(limit.check("bob").is_ok(), "buckets are per user");
    }
}
