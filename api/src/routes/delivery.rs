//! `GET /v1/delivery`: the ways this deployment delivers a task's events, and where the
//! caller receives each.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use inferpush_protocol::http::{DeliveryOptions, SinkInfo};
use inferpush_protocol::{InferenceChannel, SinkKind};

use super::events::EVENTS_PATH;
use crate::AppState;
use crate::auth::User;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/delivery", get(options))
}

/// Every sink, whether it is on, and the caller's own channel, stream or topic on it. A
/// task may name some of them in `sinks`, and add a `webhook`.
#[utoipa::path(
    get,
    path = "/v1/delivery",
    tag = "events",
    security(("bearer" = [])),
    responses((status = 200, description = "The sinks", body = DeliveryOptions)),
)]
pub(crate) async fn options(State(state): State<AppState>, user: User) -> axum::Json<DeliveryOptions> {
    let delivery = &state.delivery;
    let sinks = SinkKind::ALL
        .into_iter()
        .map(|name| {
            let (description, address) = match name {
                SinkKind::Pusher => (
                    "Pusher Channels through the deployment's Pusher server: subscribe with pusher-js or Laravel Echo, \
                     authorised at /pusher/auth; at most once per connection, catch up with GET /v1/inference?since=",
                    InferenceChannel::private(&user.id).ok().map(|c| c.to_string()),
                ),
                SinkKind::Sse => (
                    "Server-sent events from the api (text/event-stream); reconnect with Last-Event-ID to get what \
                     was missed: nothing lost, nothing twice. One task's: /v1/inference/{task_id}/events",
                    Some(format!("{}{EVENTS_PATH}", state.public_url)),
                ),
                SinkKind::Mqtt => (
                    "MQTT, QoS 1 (at least once) on the caller's topic of the deployment's broker",
                    Some(format!("{}/{}/events", delivery.mqtt_topic_prefix.trim_end_matches('/'), user.id)),
                ),
                SinkKind::Webhook => (
                    "Signed HTTP POSTs to the task's `webhook` URL (Standard Webhooks: webhook-id, webhook-timestamp, \
                     webhook-signature), retried on 5xx and timeouts with the same webhook-id; filter with \
                     `webhook_events_filter`",
                    None,
                ),
            };
            SinkInfo { name, enabled: delivery.is_on(name), description: description.into(), address }
        })
        .collect();
    axum::Json(DeliveryOptions { sinks })
}
