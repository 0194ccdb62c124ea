//! Bearer API keys with scopes for the services' HTTP APIs.
//!
//! Clients are configured as `client=NAME;scopes=S1,S2;sha256=HEX` entries
//! (`ORDERBUS_API_KEYS`, `ORDERBUS_API_KEYS_FILE`): only the SHA-256 of each key is stored, and
//! a presented key's hash is compared with every client's in constant time. [`Auth::protect`]
//! puts a [`Policy`] on a router: a missing or unknown key is 401 with
//! `WWW-Authenticate: Bearer`, a key without the route's scope is 403, both as JSON
//! `{"error", "message"}`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthMode;

/// Read orders (`GET /orders…`).
pub const ORDERS_READ: &str = "orders:read";
/// Create and change orders, exchanges, returns.
pub const ORDERS_WRITE: &str = "orders:write";
/// Read operational views.
pub const OPS_READ: &str = "ops:read";
/// Replay parked messages.
pub const OPS_REPLAY: &str = "ops:replay";
/// Start and settle payments.
pub const PAYMENTS_WRITE: &str = "payments:write";

/// Prefix of minted keys (recognisable in a secret scanner).
const KEY_PREFIX: &str = "obk_";

/// One configured API client.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub name: String,
    pub scopes: BTreeSet<String>,
    sha256: [u8; 32],
}

impl fmt::Debug for ApiClient {
    // The hash is not a secret, but it has no place in logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// The configured clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiKeys {
    clients: Vec<ApiClient>,
}

/// A malformed `ORDERBUS_API_KEYS` entry.
#[derive(Debug, thiserror::Error)]
#[error("API key entry {index} ({client}): {reason}")]
pub struct ApiKeysError {
    pub index: usize,
    pub client: String,
    pub reason: String,
}

impl ApiKeys {
    /// Parses entries separated by whitespace or `|`; `#` starts a comment up to the end of
    /// the line.
    pub fn parse(text: &str) -> Result<Self, ApiKeysError> {
        let mut clients = Vec::new();
        let entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == '|'))
            .filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let client = parse_entry(entry).map_err(|(client, reason)| ApiKeysError {
                index: index + 1,
                client,
                reason,
            })?;
            if clients.iter().any(|c: &ApiClient| c.name == client.name) {
                return Err(ApiKeysError {
                    index: index + 1,
                    client: client.name,
                    reason: "client named twice".into(),
                });
            }
            clients.push(client);
        }
        Ok(Self { clients })
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn clients(&self) -> &[ApiClient] {
        &self.clients
    }

    /// The client whose key this is. Every configured hash is compared (in constant time),
    /// so the time taken does not tell which client, if any, was close.
    pub fn authenticate(&self, key: &str) -> Option<&ApiClient> {
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for client in &self.clients {
            if bool::from(client.sha256.ct_eq(&presented)) {
                found = Some(client);
            }
        }
        found
    }
}

fn parse_entry(entry: &str) -> Result<ApiClient, (String, String)> {
    let (mut name, mut scopes, mut hash) = (None, None, None);
    for part in entry.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err((
                name.clone().unwrap_or_default(),
                format!("{part:?} is not key=value"),
            ));
        };
        match k.trim() {
            "client" => name = Some(v.trim().to_owned()),
            "scopes" => {
                scopes = Some(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect::<BTreeSet<_>>(),
                )
            }
            "sha256" => hash = Some(v.trim().to_owned()),
            other => {
                return Err((
                    name.clone().unwrap_or_default(),
                    format!("unknown field {other:?} (client, scopes, sha256)"),
                ))
            }
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| (String::new(), "missing client=".to_owned()))?;
    let scopes = scopes
        .filter(|s| !s.is_empty())
        .ok_or_else(|| (name.clone(), "missing scopes=".to_owned()))?;
    let hash = hash.ok_or_else(|| (name.clone(), "missing sha256=".to_owned()))?;
    let bytes = hex::decode(&hash).map_err(|e| (name.clone(), format!("sha256: {e}")))?;
    let sha256: [u8; 32] = bytes
        .try_into()
        .map_err(|_| (name.clone(), "sha256 must be 64 hex digits".to_owned()))?;
    Ok(ApiClient {
        name,
        scopes,
        sha256,
    })
}

/// A new random key and its configuration entry.
#[derive(Clone)]
pub struct MintedKey {
    /// The bearer key: shown once, never stored by the service.
    pub key: String,
    /// The `ORDERBUS_API_KEYS` entry for it (holds only the hash).
    pub entry: String,
}

/// Mints a key (256 random bits) for `client` with `scopes`.
pub fn mint_key(client: &str, scopes: &[String]) -> Result<MintedKey, ApiKeysError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let entry = format!(
        "client={client};scopes={};sha256={}",
        scopes.join(","),
        hex::encode(Sha256::digest(key.as_bytes()))
    );
    // Refuse what the service would refuse at start.
    ApiKeys::parse(&entry)?;
    Ok(MintedKey { key, entry })
}

/// `api-key`: every binary's subcommand to mint a key.
#[derive(Clone, Debug, clap::Args)]
pub struct ApiKeyArgs {
    /// Name of the client the key is for (letters, digits, - and _).
    #[arg(long)]
    pub client: String,
    /// Scopes, comma-separated: orders:read, orders:write, ops:read, ops:replay,
    /// payments:write, …
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// Print `ORDERBUS_API_KEY=…` and `ORDERBUS_API_KEYS_ENTRY=…` lines for scripts.
    #[arg(long)]
    pub shell: bool,
}

impl ApiKeyArgs {
    /// Mints the key and returns what to print.
    pub fn run(&self) -> Result<String, ApiKeysError> {
        let valid = !self.client.is_empty()
            && self
                .client
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(ApiKeysError {
                index: 1,
                client: self.client.clone(),
                reason: "client names use letters, digits, - and _".into(),
            });
        }
        let minted = mint_key(&self.client, &self.scopes)?;
        Ok(if self.shell {
            format!(
                "ORDERBUS_API_KEY={}\nORDERBUS_API_KEYS_ENTRY={}\n",
                minted.key, minted.entry
            )
        } else {
            format!(
                "API key for client {} (shown once; give it to the client, keep no copy):\n  {}\n\n\
                 Add this entry to the service's ORDERBUS_API_KEYS (or ORDERBUS_API_KEYS_FILE); \
                 it holds only the key's SHA-256:\n  {}\n",
                self.client, minted.key, minted.entry
            )
        })
    }
}

/// Authentication settings as configured (resolved into an [`Auth`] by services with an API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub keys: ApiKeys,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Keys,
            keys: ApiKeys::default(),
        }
    }
}

impl AuthSettings {
    /// Keys required, these clients.
    pub fn keys(keys: ApiKeys) -> Self {
        Self {
            mode: AuthMode::Keys,
            keys,
        }
    }

    /// No authentication (local development).
    pub fn open() -> Self {
        Self {
            mode: AuthMode::Open,
            keys: ApiKeys::default(),
        }
    }
}

/// Why a service with an API refuses to start.
#[derive(Debug, thiserror::Error)]
#[error(
    "no API keys configured for {service}: set ORDERBUS_API_KEYS or ORDERBUS_API_KEYS_FILE \
     (mint a key with `<binary> api-key --client NAME --scopes ...`), or ORDERBUS_AUTH=open for \
     local development"
)]
pub struct NoApiKeys {
    pub service: String,
}

/// The authentication of one service's API.
#[derive(Clone, Debug)]
pub struct Auth {
    keys: Option<Arc<ApiKeys>>,
}

impl Auth {
    /// Refuses a service with no keys unless authentication is explicitly `open` (logged as a
    /// WARN at every start).
    pub fn from_settings(settings: &AuthSettings, service: &str) -> Result<Self, NoApiKeys> {
        match settings.mode {
            AuthMode::Open => {
                tracing::warn!(
                    service,
                    "ORDERBUS_AUTH=open: the API accepts every request WITHOUT authentication \
                     (local development only)"
                );
                Ok(Self { keys: None })
            }
            AuthMode::Keys if settings.keys.is_empty() => Err(NoApiKeys {
                service: service.to_owned(),
            }),
            AuthMode::Keys => {
                let clients: Vec<&str> = settings
                    .keys
                    .clients()
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                tracing::info!(service, ?clients, "API keys required");
                Ok(Self {
                    keys: Some(Arc::new(settings.keys.clone())),
                })
            }
        }
    }

    /// Requires `policy` on every route of `router` except `public` paths (webhooks verify
    /// their own signatures; documents such as `/openapi.json`). Apply it before merging other
    /// routers: it covers only the routes `router` has.
    pub fn protect(&self, router: Router, policy: Policy, public: &[&str]) -> Router {
        let guard = Guard {
            keys: self.keys.clone(),
            policy,
            public: Arc::new(public.iter().map(|p| (*p).to_owned()).collect()),
        };
        router.route_layer(axum::middleware::from_fn_with_state(guard, authorize))
    }
}

/// Which scope a request needs.
#[derive(Clone, Debug)]
pub enum Policy {
    /// Every request needs this scope.
    Scope(&'static str),
    /// GET and HEAD need `read`, every other method needs `write`.
    ReadWrite {
        read: &'static str,
        write: &'static str,
    },
}

impl Policy {
    pub fn read_write(read: &'static str, write: &'static str) -> Self {
        Policy::ReadWrite { read, write }
    }

    fn scope_for(&self, method: &Method) -> &'static str {
        match self {
            Policy::Scope(s) => s,
            Policy::ReadWrite { read, write } => {
                if method == Method::GET || method == Method::HEAD {
                    read
                } else {
                    write
                }
            }
        }
    }
}

#[derive(Clone)]
struct Guard {
    keys: Option<Arc<ApiKeys>>,
    policy: Policy,
    public: Arc<BTreeSet<String>>,
}

/// The authenticated client, in the request's extensions for handlers.
#[derive(Clone, Debug)]
pub struct Client(pub String);

async fn authorize(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let Some(keys) = &guard.keys else {
        return next.run(req).await;
    };
    if guard.public.contains(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
    let Some(presented) = presented else {
        return unauthorized(
            "a bearer API key is required (Authorization: Bearer <key>)",
            None,
        );
    };
    let Some(client) = keys.authenticate(presented) else {
        return unauthorized("the API key is not valid", Some("invalid_token"));
    };
    let scope = guard.policy.scope_for(req.method());
    tracing::Span::current().record("client", client.name.as_str());
    if !client.has_scope(scope) {
        tracing::info!(client = %client.name, scope, "request refused: missing scope");
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("client {} lacks the scope {scope}", client.name),
        );
    }
    req.extensions_mut().insert(Client(client.name.clone()));
    next.run(req).await
}

fn unauthorized(message: &str, error_code: Option<&str>) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let challenge = match error_code {
        Some(code) => format!("Bearer error=\"{code}\""),
        None => "Bearer".to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

fn error(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": error, "message": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minted_keys_authenticate_their_client_only() {
        let scopes = vec![ORDERS_READ.to_owned()];
        let a = mint_key("a", &scopes).unwrap();
        let b = mint_key("b", &[ORDERS_WRITE.to_owned()]).unwrap();
        let keys = ApiKeys::parse(&format!("{} | {}", a.entry, b.entry)).unwrap();
        assert_eq!(
            keys.authenticate(&a.key).map(|c| c.name.as_str()),
            Some("a")
        );
        assert_eq!(
            keys.authenticate(&b.key).map(|c| c.name.as_str()),
            Some("b")
        );
        assert!(keys.authenticate("obk_wrong").is_none());
        assert!(keys.authenticate(&a.entry).is_none());
        assert!(keys
            .authenticate(&a.key)
            .is_some_and(|c| c.has_scope(ORDERS_READ)));
        assert!(!format!("{keys:?}").contains(&a.entry[a.entry.len() - 64..]));
    }

    #[test]
    fn entries_parse_from_lines_and_bars_with_comments() {
        let h = "ab".repeat(32);
        let text = format!(
            "# clients\nclient=x;scopes=orders:read,ops:read;sha256={h} # the shop\n\
             client=y;scopes=orders:write;sha256={h}|client=z;scopes=ops:replay;sha256={h}"
        );
        let keys = ApiKeys::parse(&text).unwrap();
        let names: Vec<&str> = keys.clients().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["x", "y", "z"]);
        assert!(keys.clients()[0].has_scope(OPS_READ));
        for bad in [
            "client=x;scopes=a".to_owned(),
            format!("scopes=a;sha256={h}"),
            format!("client=x;sha256={h}"),
            "client=x;scopes=a;sha256=zz".to_owned(),
            format!("client=x;scopes=a;sha256={h};colour=red"),
            format!("client=x;scopes=a;sha256={h} client=x;scopes=b;sha256={h}"),
            "client=x;scopes=a;sha256=abcd".to_owned(),
        ] {
            assert!(ApiKeys::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_keys_refuses_unless_open() {
        assert!(Auth::from_settings(&AuthSettings::default(), "svc").is_err());
        assert!(Auth::from_settings(&AuthSettings::open(), "svc").is_ok());
    }

    proptest! {
        // Whatever an operator types, parsing answers Ok or a clear error, never a panic.
        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}") {
            let _ = ApiKeys::parse(&text);
        }

        #[test]
        fn only_the_exact_key_authenticates(suffix in "[a-z0-9]{0,8}") {
            let minted = mint_key("c", &[ORDERS_READ.to_owned()]).unwrap();
            let keys = ApiKeys::parse(&minted.entry).unwrap();
            let other = format!("{}{suffix}x", minted.key);
            prop_assert!(keys.authenticate(&other).is_none());
            prop_assert!(keys.authenticate(&minted.key).is_some());
        }
    }
}
