//! One module per subcommand.

pub mod chat;
pub mod status;
pub mod submit;
pub mod wait;

use inferpush_client::api::ApiClient;

use crate::Connection;

/// The api client for `connection`, or a clear error when no credential was given.
pub fn api_client(connection: &Connection) -> anyhow::Result<ApiClient> {
    let token = connection.token.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
        anyhow::anyhow!("no credential: pass --token or set INFERPUSH_TOKEN (with `make run`, try dev-alice)")
    })?;
    Ok(ApiClient::new(&connection.api_url, token))
}
