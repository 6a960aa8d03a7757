//! The inferpush HTTP api as a typed client: submit, read a task, sign a subscription.
//! Errors carry the `detail` of the api's problem+json answer.

use serde::Deserialize;
use serde_json::{Value, json};

/// What went wrong talking to the api.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The api answered with an error status.
    #[error("{status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The problem+json `detail`, or the body.
        detail: String,
    },
    /// The api could not be reached or answered something unreadable.
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
}

/// The `202` answer to a submit.
#[derive(Debug, Clone, Deserialize)]
pub struct Accepted {
    /// The new task's id.
    pub task_id: String,
    /// The channel its events go to.
    pub channel: String,
    /// Where its state can be read.
    pub status_url: String,
}

/// A client for one api and one bearer credential (API key or JWT).
#[derive(Debug, Clone)]
pub struct ApiClient {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the api at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// `POST /v1/inference`.
    pub async fn submit(&self, model: &str, input: &Value) -> Result<Accepted, ApiError> {
        let request =
            self.http.post(self.url("/v1/inference")).json(&json!({"model": model, "input": input}));
        Ok(answer(request.bearer_auth(&self.token).send().await?).await?.json().await?)
    }

    /// `GET` a task by its status URL (absolute or relative to the api), as the api answers it.
    pub async fn task(&self, status_url: &str) -> Result<Value, ApiError> {
        let url = if status_url.starts_with("http") { status_url.to_owned() } else { self.url(status_url) };
        Ok(answer(self.http.get(url).bearer_auth(&self.token).send().await?).await?.json().await?)
    }

    /// `POST /pusher/auth`: the `auth` signature for subscribing `socket_id` to `channel`.
    pub async fn channel_auth(&self, socket_id: &str, channel: &str) -> Result<String, ApiError> {
        let form = serde_urlencoded::to_string([("socket_id", socket_id), ("channel_name", channel)])
            .expect("two string pairs always encode");
        let request = self
            .http
            .post(self.url("/pusher/auth"))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        let body: Value = answer(request.send().await?).await?.json().await?;
        body["auth"].as_str().map(str::to_owned).ok_or_else(|| ApiError::Status {
            status: 200,
            detail: format!("no `auth` in the channel authorisation: {body}"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The response when its status is a success, else its problem+json detail as an error.
async fn answer(response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| body["detail"].as_str().map(str::to_owned))
        .unwrap_or(text);
    Err(ApiError::Status { status: status.as_u16(), detail })
}
