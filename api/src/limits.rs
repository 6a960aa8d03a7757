//! Per-user rate limits (token buckets, via governor) on submit and channel auth.

use std::num::NonZeroU32;
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
}

impl Limits {
    /// Forgets the buckets of users who are idle again.
    pub fn shrink(&self) {
        self.submit.shrink();
        self.auth.shrink();
        self.list.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
