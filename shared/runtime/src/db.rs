//! PgPool with acquire timeout, server-side statement_timeout and an idle probe.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

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
        // instead of hanging on the first real query (messaging.md A3).
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
    use sqlx::{AssertSqlSafe, ConnectOptions};
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
