//! The one reqwest client setup every partner call goes through.

use std::time::Duration;

/// Timeouts and identity of a service's partner client.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// The calling service (goes into the user agent).
    pub service: String,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Deadline for the whole call (connect, send, headers and body).
    pub total_timeout: Duration,
}

impl HttpClientConfig {
    /// 5 s connect, 15 s read, 30 s total.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
            total_timeout: Duration::from_secs(30),
        }
    }

    /// `orderbus/<crate version> (<service>)`.
    pub fn user_agent(&self) -> String {
        format!("orderbus/{} ({})", env!("CARGO_PKG_VERSION"), self.service)
    }
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the partner HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// Builds the client. Proxies are never taken from `HTTP(S)_PROXY` (a stray variable in a pod
/// must not reroute payment calls) and redirects are not followed (a partner API that redirects
/// is misconfigured, and following would resend the body elsewhere).
pub fn http_client(config: &HttpClientConfig) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .user_agent(config.user_agent())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .timeout(config.total_timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ClientError)
}
