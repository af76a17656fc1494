//! The server's calls out to other services (auth webhooks now; timers, RPC and lifecycle
//! webhooks later) share one way of making an HTTP client, so every caller gets the same
//! connection pooling, connect deadline and identification.

use std::time::Duration;

/// How long opening a connection to a backend may take; each caller bounds the whole
/// request with its own, usually shorter, deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle pooled connection to a backend is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no HTTP client could be made.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The TLS library refused the client configuration (not expected with ring).
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    /// The HTTP client refused its settings.
    #[error(transparent)]
    Client(#[from] reqwest::Error),
}

/// A pooled HTTP/1.1 and HTTP/2 client (https through rustls with the system's roots)
/// that identifies itself as pushhub and never follows redirects: a backend's redirect
/// is an answer to report, not a place to send a credential on to.
pub fn client() -> Result<reqwest::Client, OutboundError> {
    Ok(builder()?.build()?)
}

/// The settings of [`client`], for a caller that adds its own (timers add a resolver
/// that keeps to the allowed targets).
pub fn builder() -> Result<reqwest::ClientBuilder, OutboundError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config()?)
        .user_agent(concat!("pushhub/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none()))
}
