//! Binding the small side listeners (health and metrics) both binaries open.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds `addr`, or, when it is taken (a second process on the same machine with the
/// default), a free port on the same interface, saying so in the log.
pub async fn bind_or_free_port(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            let fallback = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
            tracing::warn!(wanted = %addr, "the {what}'s address is taken; using a free port instead");
            Ok(fallback)
        }
        Err(error) => Err(error),
    }
}
