//! Webhooks as the Standard Webhooks specification has them: a `whsec_` secret, the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, and a body of
//! `{type, timestamp, data}`. Any of the specification's libraries verifies them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::envelope::TaskId;
use crate::event::InferenceEvent;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest secret bytes accepted (the specification asks for 24 to 64).
pub const MIN_SECRET_BYTES: usize = 24;

/// A deployment's signing secret.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    /// Reads `whsec_` followed by the base64 of 24 to 64 random bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            format!(
                "a webhook secret starts with `{SECRET_PREFIX}` (Standard Webhooks); generate one with \
                     `echo whsec_$(openssl rand -base64 32)`"
            )
        })?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the webhook secret is not base64 after `{SECRET_PREFIX}`: {e}"))?;
        if !(MIN_SECRET_BYTES..=64).contains(&bytes.len()) {
            return Err(format!(
                "the webhook secret holds {} bytes; Standard Webhooks asks for {MIN_SECRET_BYTES} to 64",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The `webhook-signature` header for a message: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp_secs: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp_secs}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The body of one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// The event name, e.g. `inference.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event happened, RFC 3339.
    pub timestamp: String,
    /// The same data as the Pusher event.
    pub data: InferenceEvent,
}

/// The `webhook-id` of a task's event: the same on every attempt, so receivers can
/// drop a repeat.
pub fn message_id(task_id: TaskId, event_name: &str) -> String {
    format!("msg_{}_{}", task_id.0.simple(), event_name.trim_start_matches("inference."))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_reference_libraries_do() {
        assert_eq!(WebhookSecret::parse(SECRET).unwrap().sign(ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn refuses_secrets_that_are_not_standard_ones() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err().contains("whsec_"));
        assert!(WebhookSecret::parse("whsec_!!!").unwrap_err().contains("base64"));
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err().contains("bytes"));
    }

    #[test]
    fn message_ids_differ_by_event_and_not_by_attempt() {
        let task = TaskId::new_v7();
        assert_eq!(message_id(task, "inference.completed"), message_id(task, "inference.completed"));
        assert_ne!(message_id(task, "inference.started"), message_id(task, "inference.completed"));
    }
}
