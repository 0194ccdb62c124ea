//! Servers on 127.0.0.1:0 and a migrated database.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use orderbus_partner::CallLog;
use orderbus_testkit::TestDb;
use tokio::task::JoinHandle;

/// A server that stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub async fn serve(router: Router) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Server { addr, task })
}

/// `/slow/add_invoice` never answers in time, `/broken/add_invoice` answers 500, `/ua` echoes
/// the user agent, `/redirect` redirects to `/ua`.
pub async fn stub() -> anyhow::Result<Server> {
    serve(
        Router::new()
            .route(
                "/slow/add_invoice",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late"
                }),
            )
            .route(
                "/broken/add_invoice",
                post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error") }),
            )
            .route(
                "/ua",
                get(|headers: HeaderMap| async move {
                    headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                }),
            )
            .route(
                "/redirect",
                get(|| async { Redirect::temporary("/ua").into_response() }),
            ),
    )
    .await
}

/// A migrated database and a call log on it.
pub async fn call_log() -> anyhow::Result<(TestDb, CallLog)> {
    let db = TestDb::create().await?;
    orderbus_partner::MIGRATOR.run(db.pool()).await?;
    let calls = CallLog::new(db.pool().clone());
    Ok((db, calls))
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}
