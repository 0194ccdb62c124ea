//! Helpers shared by the end-to-end tests.

use orderbus_runtime::auth::{mint_key, ORDERS_READ, ORDERS_WRITE};
use orderbus_runtime::{ApiKeys, AuthSettings};

/// A key with the storefront's scopes and the settings that accept it.
pub fn api_key() -> anyhow::Result<(String, AuthSettings)> {
    let minted = mint_key("e2e", &[ORDERS_READ.into(), ORDERS_WRITE.into()])?;
    Ok((
        minted.key,
        AuthSettings::keys(ApiKeys::parse(&minted.entry)?),
    ))
}

/// An HTTP client sending `Authorization: Bearer <key>` with every request.
pub fn authorized_client(key: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}
