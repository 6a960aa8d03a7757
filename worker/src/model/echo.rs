//! `echo`: returns its input, optionally after `delay_ms`; measures platform overhead.

use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::catalogue::echo;
use serde_json::Value;

use super::{Model, ModelError, Run};

/// The echo model.
pub struct Echo;

#[async_trait]
impl Model for Echo {
    async fn infer(&self, input: &Value, _run: Run) -> Result<Value, ModelError> {
        echo::validate(input).map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        let delay = echo::delay_ms(input);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        Ok(input.clone())
    }
}

#[cfg(test)]
mod tests {
    use inferpush_protocol::Lane;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn output_equals_input() {
        let input = json!({"text": "héllo", "n": [1, 2, 3]});
        assert_eq!(Echo.infer(&input, Run::on(Lane::Main)).await.unwrap(), input);
    }

    #[tokio::test]
    async fn delay_ms_sleeps_first() {
        let started = tokio::time::Instant::now();
        Echo.infer(&json!({"delay_ms": 60}), Run::on(Lane::Main)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    #[tokio::test]
    async fn input_that_skipped_validation_is_refused() {
        let err = Echo.infer(&json!({"delay_ms": -3}), Run::on(Lane::Main)).await.unwrap_err();
        assert!(matches!(err, ModelError::InvalidInput(_)));
    }
}
