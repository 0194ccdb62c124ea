//! PgPool with acquire timeout, server-side statement_timeout and an idle probe; the database
//! readiness probe; the "database unavailable" classifier and its 503 answer.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderbus_bus::Health;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Builds the pool lazily (no connection until first use, so a service starts while the
/// database is down and reports not-ready instead of crash-looping).
pub fn pool(config: &Config) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose().parse()?;
    let options = options.options([(
        "statement_timeout",
        config.db_statement_timeout.as_millis().to_string(),
    )]);
    let probe_timeout = config.db_acquire_timeout.min(Duration::from_secs(2));
    Ok(PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(config.db_acquire_timeout)
        .test_before_acquire(false)
        // A connection that sat idle may be half-open; probe it under its own short timeout
        // instead of hanging on the first real query.
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for < Duration::from_secs(30) {
                    return Ok(true);
                }
                Ok(matches!(
                    tokio::time::timeout(probe_timeout, conn.execute("SELECT 1")).await,
                    Ok(Ok(_))
                ))
            })
        })
        .connect_lazy_with(options))
}

/// Why [`create_database_if_missing`] could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CreateDatabaseError {
    #[error("no database name in {0}")]
    NoName(String),
    #[error("refusing to create database {0:?}: use letters, digits and _")]
    BadName(String),
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
}

/// Creates the database named in `database_url` if it does not exist, connecting to the
/// server's `postgres` database. For local development (`make run`); in production the
/// database is provisioned, not created by the service. Returns whether it was created.
pub async fn create_database_if_missing(database_url: &str) -> Result<bool, CreateDatabaseError> {
    use sqlx::AssertSqlSafe;
    let options: PgConnectOptions = database_url.parse()?;
    let name = options
        .get_database()
        .ok_or_else(|| CreateDatabaseError::NoName(crate::redact_url(database_url)))?
        .to_owned();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(CreateDatabaseError::BadName(name));
    }
    let mut conn = options.database("postgres").connect().await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_some() {
        return Ok(false);
    }
    // The name was checked above (letters, digits, _), so quoting it is safe.
    let created = conn
        .execute(sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\""
        ))))
        .await;
    match created {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(true)
        }
        // Another process created it between our check and our CREATE.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Readiness flag of the database probe.
pub const DATABASE_FLAG: &str = "database";

/// Seconds a client is told to wait (`Retry-After`) while the database is unreachable.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Whether `e` means "the database cannot be reached right now" (worth a retry later) rather
/// than a bad query or data: pool timeout or closed, I/O, TLS, a crashed connection worker,
/// SQLSTATE class 08 (connection exception), 57P01..57P03 (admin/crash shutdown, cannot connect
/// now).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // A connection cut during the handshake surfaces as a protocol error ("unexpected
        // response from SSLRequest").
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

/// The answer for a request that needs the unreachable database: 503 with `Retry-After` and
/// the API's JSON error shape.
pub fn unavailable_response() -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({
            "error": "unavailable",
            "message": "the database is unreachable; retry later",
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Keeps the `database` readiness flag current: one dedicated connection (not from the pool,
/// so a busy pool does not read as an outage), `SELECT 1` every `interval` under `timeout`,
/// reconnecting after a failure.
pub async fn probe(
    config: &crate::Config,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose().parse()?;
    let (interval, timeout) = (config.db_probe_interval, config.db_probe_timeout);
    let mut conn: Option<PgConnection> = None;
    let mut was_up = None;
    loop {
        let up = tokio::time::timeout(timeout, async {
            if conn.is_none() {
                conn = Some(options.connect().await?);
            }
            match conn.as_mut() {
                Some(c) => c.execute("SELECT 1").await.map(|_| ()),
                None => Ok(()),
            }
        })
        .await;
        let up = match up {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if was_up != Some(false) {
                    tracing::warn!(error = %e, "database unreachable; not ready");
                }
                false
            }
            Err(_) => {
                if was_up != Some(false) {
                    tracing::warn!(?timeout, "database probe timed out; not ready");
                }
                false
            }
        };
        if !up {
            conn = None;
        } else if was_up == Some(false) {
            tracing::info!("database reachable again");
        }
        was_up = Some(up);
        health.set(DATABASE_FLAG, up);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_query_errors_are_not() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        // A connection cut during the handshake.
        assert!(is_unavailable(&sqlx::Error::Protocol(
            "unexpected response from SSLRequest".into()
        )));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        let r = unavailable_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }
}
