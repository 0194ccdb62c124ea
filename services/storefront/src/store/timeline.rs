//! The per-order timeline: every event offered to an order, its exchanges or returns, applied
//! or not and why. A `detail` holds only what the writer chose to record (known, typed fields);
//! it is sanitised on the way in so that no string can make PostgreSQL refuse the row (JSONB
//! refuses `\u0000`) and no entry can grow without bound.

use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::Source;
use crate::metrics as m;

/// The longest string kept in a timeline detail (longer ones are cut, marked with `…`).
pub const DETAIL_STRING_MAX_CHARS: usize = 500;

/// A timeline row.
pub struct Entry<'a> {
    pub order_code: i64,
    pub subject: String,
    pub source: &'a Source,
    pub event: &'a str,
    pub applied: bool,
    pub reason: Option<String>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub detail: Value,
}

impl Entry<'_> {
    fn subject_kind(&self) -> &str {
        self.subject.split(':').next().unwrap_or("order")
    }
}

/// The row whose status a timeline entry records the change of.
#[derive(Clone, Copy, Debug)]
pub enum StatusRow {
    Order(i64),
    Exchange(i64),
    Return(i64),
}

/// The status change written by the same statement as its timeline row (one round trip).
#[derive(Clone, Copy, Debug)]
pub struct StatusWrite<'a> {
    pub row: StatusRow,
    pub status: &'a str,
}

/// A string as it may be stored: no NUL, at most [`DETAIL_STRING_MAX_CHARS`] characters.
pub fn clean_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| *c != '\0')
        .take(DETAIL_STRING_MAX_CHARS)
        .collect();
    if text
        .chars()
        .filter(|c| *c != '\0')
        .nth(DETAIL_STRING_MAX_CHARS)
        .is_some()
    {
        out.push('…');
    }
    out
}

/// `detail` made safe to store: every string (keys too) cleaned by [`clean_text`].
pub fn sanitise(detail: Value) -> Value {
    match detail {
        Value::String(s) => Value::String(clean_text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(sanitise).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (clean_text(&k), sanitise(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

/// Writes a timeline row.
pub async fn record(conn: &mut PgConnection, e: Entry<'_>) -> Result<(), sqlx::Error> {
    record_moving(conn, e, None).await
}

/// Writes a timeline row and, in the same statement, the status change it records.
pub async fn record_moving(
    conn: &mut PgConnection,
    e: Entry<'_>,
    status: Option<StatusWrite<'_>>,
) -> Result<(), sqlx::Error> {
    let detail = sanitise(e.detail.clone());
    let message_id = e.source.message_id.as_deref();
    let reason = e.reason.as_deref();
    // A data-modifying CTE runs exactly once whether or not the INSERT reads it.
    let done = match status.map(|w| (w.row, w.status)) {
        None => sqlx::query!(
            "INSERT INTO order_timeline (order_code, subject, source, event, applied, reason, \
             status_before, status_after, message_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            e.order_code,
            &e.subject,
            &e.source.name,
            e.event,
            e.applied,
            reason,
            e.before,
            e.after,
            message_id,
            detail,
        )
        .execute(&mut *conn)
        .await,
        Some((StatusRow::Order(key), status)) => sqlx::query!(
            "WITH moved AS (UPDATE orders SET status = $11, updated_at = now() WHERE order_code = $12) \
             INSERT INTO order_timeline (order_code, subject, source, event, applied, reason, \
             status_before, status_after, message_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            e.order_code,
            &e.subject,
            &e.source.name,
            e.event,
            e.applied,
            reason,
            e.before,
            e.after,
            message_id,
            detail,
            status,
            key,
        )
        .execute(&mut *conn)
        .await,
        Some((StatusRow::Exchange(key), status)) => sqlx::query!(
            "WITH moved AS (UPDATE exchange_orders SET status = $11, updated_at = now() WHERE id = $12) \
             INSERT INTO order_timeline (order_code, subject, source, event, applied, reason, \
             status_before, status_after, message_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            e.order_code,
            &e.subject,
            &e.source.name,
            e.event,
            e.applied,
            reason,
            e.before,
            e.after,
            message_id,
            detail,
            status,
            key,
        )
        .execute(&mut *conn)
        .await,
        Some((StatusRow::Return(key), status)) => sqlx::query!(
            "WITH moved AS (UPDATE return_orders SET status = $11, updated_at = now() WHERE id = $12) \
             INSERT INTO order_timeline (order_code, subject, source, event, applied, reason, \
             status_before, status_after, message_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            e.order_code,
            &e.subject,
            &e.source.name,
            e.event,
            e.applied,
            reason,
            e.before,
            e.after,
            message_id,
            detail,
            status,
            key,
        )
        .execute(&mut *conn)
        .await,
    };
    done?;
    if !e.applied {
        m::not_applied(
            e.subject_kind(),
            e.event,
            e.reason.as_deref().unwrap_or("unknown"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                strings(x, out)
            }),
            _ => {}
        }
    }

    #[test]
    fn nul_is_dropped_and_long_strings_are_cut() {
        let d = sanitise(json!({ "a\u{0}b": ["x\u{0}y", "z".repeat(2000)] }));
        assert_eq!(d["ab"][0], "xy");
        let cut = d["ab"][1].as_str().unwrap_or_default();
        assert_eq!(cut.chars().count(), DETAIL_STRING_MAX_CHARS + 1);
    }

    proptest! {
        /// Whatever strings a detail holds, the sanitised one has no NUL and no long string.
        #[test]
        fn sanitised_details_are_storable(
            keys in proptest::collection::vec(".{0,20}", 0..5),
            values in proptest::collection::vec("(\\PC|\\x00){0,700}", 0..5),
        ) {
            let detail = Value::Object(
                keys.into_iter().zip(values).map(|(k, v)| (k, json!([v]))).collect(),
            );
            let mut found = Vec::new();
            strings(&sanitise(detail), &mut found);
            for s in found {
                prop_assert!(!s.contains('\0'));
                prop_assert!(s.chars().count() <= DETAIL_STRING_MAX_CHARS + 1);
            }
        }
    }
}
