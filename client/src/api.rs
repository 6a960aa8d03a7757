//! The inferpush HTTP api as a typed client: submit, read a task, sign a subscription.
//! Bodies are the api's own types ([`inferpush_protocol::http`]); errors carry the
//! `detail` of the api's problem+json answer.

use inferpush_protocol::TaskRecord;
use inferpush_protocol::http::{
    Accepted, ChannelAuthRequest, ChannelAuthResponse, ListQuery, Problem, SubmitRequest, TaskList,
};

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
    pub async fn submit(&self, request: &SubmitRequest) -> Result<Accepted, ApiError> {
        let request = self.http.post(self.url(inferpush_protocol::lifecycle::TASKS_PATH)).json(request);
        Ok(answer(request.bearer_auth(&self.token).send().await?).await?.json().await?)
    }

    /// `GET` a task by its status URL (absolute or relative to the api).
    pub async fn task(&self, status_url: &str) -> Result<TaskRecord, ApiError> {
        let url = if status_url.starts_with("http") { status_url.to_owned() } else { self.url(status_url) };
        Ok(answer(self.http.get(url).bearer_auth(&self.token).send().await?).await?.json().await?)
    }

    /// `GET /v1/inference?since=…&limit=…`: one page of the caller's tasks.
    pub async fn list(&self, query: &ListQuery) -> Result<TaskList, ApiError> {
        let query = serde_urlencoded::to_string(query).expect("a list query always encodes");
        let url = format!("{}?{query}", self.url(inferpush_protocol::lifecycle::TASKS_PATH));
        let request = self.http.get(url);
        Ok(answer(request.bearer_auth(&self.token).send().await?).await?.json().await?)
    }

    /// Every task of the caller after `since` (Unix ms or a task id), `page` at a time,
    /// following `next_since`.
    pub async fn list_all(&self, since: &str, page: usize) -> Result<Vec<TaskRecord>, ApiError> {
        let mut query = ListQuery { since: Some(since.to_owned()), limit: Some(page) };
        let mut tasks = Vec::new();
        loop {
            let page = self.list(&query).await?;
            tasks.extend(page.tasks);
            match page.next_since {
                Some(next) => query.since = Some(next.to_string()),
                None => return Ok(tasks),
            }
        }
    }

    /// `POST /pusher/auth`: the signature for subscribing `socket_id` to `channel`.
    pub async fn channel_auth(
        &self,
        socket_id: &str,
        channel: &str,
    ) -> Result<ChannelAuthResponse, ApiError> {
        let form = ChannelAuthRequest { socket_id: socket_id.into(), channel_name: channel.into() };
        let request = self
            .http
            .post(self.url("/pusher/auth"))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).expect("two strings always encode"));
        Ok(answer(request.send().await?).await?.json().await?)
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
    let detail = serde_json::from_str::<Problem>(&text).map(|problem| problem.detail).unwrap_or(text);
    Err(ApiError::Status { status: status.as_u16(), detail })
}
