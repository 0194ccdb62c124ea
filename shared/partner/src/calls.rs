//! The call recorder and all SQL of the `partner_calls` log.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tracing::Instrument;

use crate::class::ClassifyError;

/// Longest error text kept in a row.
const ERROR_TEXT_LIMIT: usize = 1000;

/// Records partner calls in `partner_calls` (migrated with [`crate::MIGRATOR`]).
#[derive(Debug, Clone)]
pub struct CallLog {
    pool: PgPool,
    write_timeout: Duration,
}

/// One stored call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub partner: String,
    pub operation: String,
    pub order: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    /// `ok` or `error`.
    pub outcome: String,
    /// [`crate::ErrorClass::as_str`] of a failure.
    pub error_class: Option<String>,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub trace_id: Option<String>,
}

struct Entry {
    outcome: &'static str,
    class: Option<&'static str>,
    status: Option<u16>,
    error: Option<String>,
}

fn bounded(text: String) -> String {
    if text.len() <= ERROR_TEXT_LIMIT {
        return text;
    }
    let mut end = ERROR_TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl CallLog {
    /// A recorder writing through `pool`; a row that cannot be written within 5 s is skipped
    /// with a warning (the call's own result is never changed by the log).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            write_timeout: Duration::from_secs(5),
        }
    }

    /// Runs `call` (one provider call), then records its duration and outcome for `order` and
    /// returns its result unchanged. Runs inside a `partner_call` span; the row carries the
    /// current trace id.
    pub async fn record<T, E, F, Fut>(
        &self,
        partner: &str,
        operation: &str,
        order: Option<&str>,
        call: F,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ClassifyError,
    {
        let span = tracing::info_span!(
            "partner_call",
            partner,
            operation,
            order = order.unwrap_or(""),
            outcome = tracing::field::Empty,
            class = tracing::field::Empty,
        );
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = call().instrument(span.clone()).await;
        let took = clock.elapsed();
        let row = match &result {
            Ok(_) => Entry {
                outcome: "ok",
                class: None,
                status: None,
                error: None,
            },
            Err(e) => Entry {
                outcome: "error",
                class: Some(e.error_class().as_str()),
                status: e.http_status(),
                error: Some(bounded(e.to_string())),
            },
        };
        span.record("outcome", row.outcome);
        span.record("class", row.class.unwrap_or("none"));
        span.in_scope(|| {
            if let Some(error) = &row.error {
                tracing::warn!(class = row.class.unwrap_or(""), %error, "partner call failed");
            }
        });
        crate::metrics::record(
            partner,
            operation,
            row.outcome,
            row.class.unwrap_or("none"),
            took,
        );
        let trace_id = orderbus_bus::trace::current().map(|c| c.trace_id().to_owned());
        let insert = sqlx::query(
            "INSERT INTO partner_calls (partner, operation, order_ref, started_at, duration_ms, \
             outcome, error_class, http_status, error, trace_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(partner)
        .bind(operation)
        .bind(order)
        .bind(started_at)
        .bind(took.as_secs_f64() * 1000.0)
        .bind(row.outcome)
        .bind(row.class)
        .bind(row.status.and_then(|s| i16::try_from(s).ok()))
        .bind(&row.error)
        .bind(trace_id)
        .execute(&self.pool);
        match tokio::time::timeout(self.write_timeout, insert).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "partner call not logged"),
            Err(_) => tracing::warn!("partner call not logged: timed out"),
        }
        result
    }

    /// The calls made for `order`, oldest first.
    pub async fn for_order(&self, order: &str) -> Result<Vec<CallRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT partner, operation, order_ref, started_at, duration_ms, outcome, error_class, \
             http_status, error, trace_id FROM partner_calls WHERE order_ref = $1 \
             ORDER BY started_at, id",
        )
        .bind(order)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let ms: f64 = r.try_get("duration_ms")?;
                let status: Option<i16> = r.try_get("http_status")?;
                Ok(CallRecord {
                    partner: r.try_get("partner")?,
                    operation: r.try_get("operation")?,
                    order: r.try_get("order_ref")?,
                    started_at: r.try_get("started_at")?,
                    duration: Duration::from_secs_f64((ms / 1000.0).max(0.0)),
                    outcome: r.try_get("outcome")?,
                    error_class: r.try_get("error_class")?,
                    http_status: status.and_then(|s| u16::try_from(s).ok()),
                    error: r.try_get("error")?,
                    trace_id: r.try_get("trace_id")?,
                })
            })
            .collect()
    }
}

/// Deletes calls started more than `older_than` ago, `batch` rows per statement. Returns how
/// many rows went.
pub async fn prune_calls(
    pool: &PgPool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let batch = batch.max(1);
    let mut total = 0u64;
    loop {
        let n = sqlx::query(
            "DELETE FROM partner_calls WHERE id IN (SELECT id FROM partner_calls \
             WHERE started_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
        )
        .bind(older_than.as_secs_f64())
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += n;
        if n < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}
