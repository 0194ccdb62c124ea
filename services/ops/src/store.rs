//! All SQL of the ops service (compile-checked `sqlx::query!` macros).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// A message as the journal stores it.
#[derive(Clone, Debug)]
pub struct NewJournalRow {
    pub via: String,
    pub routing_key: String,
    pub msg_key: String,
    pub message_id: Option<String>,
    pub app_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub trace_id: Option<String>,
    pub headers: Value,
    pub body: Vec<u8>,
    pub body_sha256: String,
    pub decoded: bool,
    pub decode_error: Option<String>,
    pub unrouted: bool,
    pub order_codes: Vec<i64>,
    pub refs: Vec<String>,
}

fn pg_array_literal<T: ToString>(items: &[T]) -> String {
    // Elements are integers or `kind:<digits>` refs: no quoting needed.
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// Inserts a batch in one statement; a row already journalled (same routing key and message
/// key, e.g. a redelivery after a crash before the ack) is skipped. Returns rows inserted.
pub async fn insert_journal(
    conn: &mut PgConnection,
    rows: &[NewJournalRow],
) -> Result<u64, sqlx::Error> {
    let n = rows.len();
    let mut via = Vec::with_capacity(n);
    let mut rk = Vec::with_capacity(n);
    let mut mk = Vec::with_capacity(n);
    let mut mid = Vec::with_capacity(n);
    let mut app = Vec::with_capacity(n);
    let mut sent = Vec::with_capacity(n);
    let mut corr = Vec::with_capacity(n);
    let mut tp = Vec::with_capacity(n);
    let mut tid = Vec::with_capacity(n);
    let mut hdr = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    let mut bsha = Vec::with_capacity(n);
    let mut dec = Vec::with_capacity(n);
    let mut derr = Vec::with_capacity(n);
    let mut unr = Vec::with_capacity(n);
    let mut oc = Vec::with_capacity(n);
    let mut rf = Vec::with_capacity(n);
    for r in rows {
        via.push(r.via.clone());
        rk.push(r.routing_key.clone());
        mk.push(r.msg_key.clone());
        // '' stands for NULL in the arrays (NULLIF below): the properties are never empty
        // when present in a useful way.
        mid.push(r.message_id.clone().unwrap_or_default());
        app.push(r.app_id.clone().unwrap_or_default());
        sent.push(r.sent_at.map(|t| t.timestamp_micros()).unwrap_or(-1));
        corr.push(r.correlation_id.clone().unwrap_or_default());
        tp.push(r.traceparent.clone().unwrap_or_default());
        tid.push(r.trace_id.clone().unwrap_or_default());
        hdr.push(r.headers.clone());
        body.push(r.body.clone());
        bsha.push(r.body_sha256.clone());
        dec.push(r.decoded);
        derr.push(r.decode_error.clone().unwrap_or_default());
        unr.push(r.unrouted);
        oc.push(pg_array_literal(&r.order_codes));
        rf.push(pg_array_literal(&r.refs));
    }
    let done = sqlx::query!(
        r#"INSERT INTO journal (via, routing_key, msg_key, message_id, app_id, sent_at,
               correlation_id, traceparent, trace_id, headers, body, body_sha256, decoded,
               decode_error, unrouted, order_codes, refs)
           SELECT via, rk, mk, NULLIF(mid, ''), NULLIF(app, ''),
                  CASE WHEN sent < 0 THEN NULL ELSE to_timestamp(sent / 1000000.0) END,
                  NULLIF(corr, ''), NULLIF(tp, ''), NULLIF(tid, ''), hdr, body, bsha, dec,
                  NULLIF(derr, ''), unr, oc::bigint[], rf::text[]
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                       $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::bytea[],
                       $12::text[], $13::bool[], $14::text[], $15::bool[], $16::text[],
                       $17::text[])
             AS t(via, rk, mk, mid, app, sent, corr, tp, tid, hdr, body, bsha, dec, derr, unr,
                  oc, rf)
           ON CONFLICT (routing_key, msg_key) DO NOTHING"#,
        &via,
        &rk,
        &mk,
        &mid,
        &app,
        &sent,
        &corr,
        &tp,
        &tid,
        &hdr,
        &body,
        &bsha,
        &dec,
        &derr,
        &unr,
        &oc,
        &rf,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// A journal row as read back.
#[derive(Clone, Debug, Serialize)]
pub struct JournalRow {
    pub id: i64,
    pub seen_at: DateTime<Utc>,
    pub via: String,
    pub routing_key: String,
    pub msg_key: String,
    pub message_id: Option<String>,
    pub app_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub decoded: bool,
    pub decode_error: Option<String>,
    pub unrouted: bool,
    pub order_codes: Vec<i64>,
    pub headers: Value,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Every journal row about `order_code`: those naming it, and those naming one of its
/// exchanges or returns (the ids its own messages tie to it, followed one hop: the ERP's
/// return id is tied to the storefront's by `erp.createRefundOrder`).
pub async fn journal_for_order(
    pool: &PgPool,
    order_code: i64,
    limit: i64,
) -> Result<Vec<JournalRow>, sqlx::Error> {
    sqlx::query_as!(
        JournalRow,
        r#"WITH seed AS (
               SELECT DISTINCT unnest(refs) AS r FROM journal WHERE order_codes @> ARRAY[$1::int8]
           ), hop AS (
               SELECT DISTINCT unnest(j.refs) AS r FROM journal j
               WHERE j.refs && ARRAY(SELECT r FROM seed)
           ), hits AS (
               -- Two index scans (GIN each) instead of one OR, which the planner turns into
               -- a sequential scan of the whole journal.
               SELECT id FROM journal WHERE order_codes @> ARRAY[$1::int8]
               UNION
               SELECT id FROM journal
               WHERE refs && ARRAY(SELECT r FROM seed UNION SELECT r FROM hop)
           )
           SELECT id, seen_at, via, routing_key, msg_key, message_id, app_id, sent_at,
                  correlation_id, trace_id, decoded, decode_error, unrouted, order_codes,
                  headers, body
           FROM journal
           WHERE id IN (SELECT id FROM hits)
           ORDER BY seen_at, id LIMIT $2"#,
        order_code,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Journal rows on `routing_key` seen in `[from, to)`, oldest first.
pub async fn journal_by_key(
    pool: &PgPool,
    routing_key: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<JournalRow>, sqlx::Error> {
    sqlx::query_as!(
        JournalRow,
        r#"SELECT id, seen_at, via, routing_key, msg_key, message_id, app_id, sent_at,
                  correlation_id, trace_id, decoded, decode_error, unrouted, order_codes,
                  headers, body
           FROM journal WHERE routing_key = $1 AND seen_at >= $2 AND seen_at < $3
           ORDER BY seen_at, id LIMIT $4"#,
        routing_key,
        from,
        to,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Rows in the journal (all, or only unrouted ones).
pub async fn journal_count(pool: &PgPool, unrouted_only: bool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM journal WHERE NOT $1 OR unrouted"#,
        unrouted_only
    )
    .fetch_one(pool)
    .await
}

/// Deletes journal rows seen before `before`, `batch` per statement. Returns rows deleted.
pub async fn prune_journal(
    pool: &PgPool,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = sqlx::query!(
            "DELETE FROM journal WHERE id IN \
             (SELECT id FROM journal WHERE seen_at < $1 ORDER BY id LIMIT $2)",
            before,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += n;
        if n < batch.max(1) as u64 {
            return Ok(total);
        }
    }
}

/// A parked message taken in from a parking queue.
#[derive(Clone, Debug)]
pub struct NewParked {
    pub service: String,
    pub work_queue: String,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub msg_key: String,
    pub park_key: String,
    pub reason: String,
    pub reason_class: String,
    pub attempts: Option<i32>,
    pub parked_at: DateTime<Utc>,
    pub properties: Value,
    pub headers: Value,
    pub body: Vec<u8>,
    pub order_codes: Vec<i64>,
    pub trace_id: Option<String>,
}

/// Stores a parked message (a second copy of the same parking is skipped). True if new.
pub async fn insert_parked(conn: &mut PgConnection, p: &NewParked) -> Result<bool, sqlx::Error> {
    let n = sqlx::query!(
        "INSERT INTO parked (service, work_queue, routing_key, message_id, msg_key, park_key, \
         reason, reason_class, attempts, parked_at, properties, headers, body, order_codes, \
         trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (service, msg_key, park_key) DO NOTHING",
        p.service,
        p.work_queue,
        p.routing_key,
        p.message_id,
        p.msg_key,
        p.park_key,
        p.reason,
        p.reason_class,
        p.attempts,
        p.parked_at,
        p.properties,
        p.headers,
        p.body,
        &p.order_codes,
        p.trace_id,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Which parked messages an operation concerns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// Substring of the park reason (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// decode | database | retries_exhausted | delivery_limit | inbox | panic | handler
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_code: Option<i64>,
    /// `name=value` of an AMQP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// parked (default) | replayed | purged
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// The ids of the parked messages `s` selects, oldest first, at most `limit`.
pub async fn select_parked(
    pool: &PgPool,
    s: &Selector,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let (hname, hvalue) = match s.header.as_deref().and_then(|h| h.split_once('=')) {
        Some((n, v)) => (Some(n.to_owned()), Some(v.to_owned())),
        None => (None, None),
    };
    let state = s.state.clone().unwrap_or_else(|| "parked".to_owned());
    sqlx::query_scalar!(
        r#"SELECT id FROM parked
           WHERE ($1::text IS NULL OR service = $1)
             AND ($2::text IS NULL OR routing_key = $2)
             AND ($3::text IS NULL OR strpos(lower(reason), lower($3)) > 0)
             AND ($4::text IS NULL OR reason_class = $4)
             AND ($5::timestamptz IS NULL OR parked_at >= $5)
             AND ($6::timestamptz IS NULL OR parked_at < $6)
             AND ($7::int8 IS NULL OR order_codes @> ARRAY[$7::int8])
             AND ($8::text IS NULL OR headers ->> $8 = $9)
             AND state = $10
           ORDER BY id LIMIT $11"#,
        s.service,
        s.routing_key,
        s.reason,
        s.class,
        s.since,
        s.until,
        s.order_code,
        hname,
        hvalue,
        state,
        limit
    )
    .fetch_all(pool)
    .await
}

/// A parked message as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParkedRow {
    pub id: i64,
    pub service: String,
    pub work_queue: String,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub reason: String,
    pub reason_class: String,
    pub attempts: Option<i32>,
    pub parked_at: DateTime<Utc>,
    pub order_codes: Vec<i64>,
    pub trace_id: Option<String>,
    pub state: String,
    pub audit_id: Option<i64>,
}

pub async fn parked_rows(pool: &PgPool, ids: &[i64]) -> Result<Vec<ParkedRow>, sqlx::Error> {
    sqlx::query_as!(
        ParkedRow,
        "SELECT id, service, work_queue, routing_key, message_id, reason, reason_class, \
         attempts, parked_at, order_codes, trace_id, state, audit_id \
         FROM parked WHERE id = ANY($1) ORDER BY id",
        ids
    )
    .fetch_all(pool)
    .await
}

/// The parked messages about an order (for its timeline).
pub async fn parked_for_order(
    pool: &PgPool,
    order_code: i64,
) -> Result<Vec<ParkedRow>, sqlx::Error> {
    sqlx::query_as!(
        ParkedRow,
        "SELECT id, service, work_queue, routing_key, message_id, reason, reason_class, \
         attempts, parked_at, order_codes, trace_id, state, audit_id \
         FROM parked WHERE order_codes @> ARRAY[$1::int8] ORDER BY parked_at, id",
        order_code
    )
    .fetch_all(pool)
    .await
}

/// One parked message with its body and headers.
#[derive(Clone, Debug)]
pub struct ParkedFull {
    pub id: i64,
    pub service: String,
    pub work_queue: String,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub reason: String,
    pub properties: Value,
    pub headers: Value,
    pub body: Vec<u8>,
}

pub async fn parked_full(pool: &PgPool, id: i64) -> Result<Option<ParkedFull>, sqlx::Error> {
    sqlx::query_as!(
        ParkedFull,
        "SELECT id, service, work_queue, routing_key, message_id, reason, properties, headers, \
         body FROM parked WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}

/// Counts of the selected messages per service, routing key, reason class and reason (digits
/// folded to `N`, so "order 123 not found" and "order 456 not found" are one group).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParkedGroup {
    pub service: String,
    pub routing_key: String,
    pub reason_class: String,
    pub reason: String,
    pub count: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

pub async fn parked_groups(pool: &PgPool, ids: &[i64]) -> Result<Vec<ParkedGroup>, sqlx::Error> {
    sqlx::query_as!(
        ParkedGroup,
        r#"SELECT service, routing_key, reason_class,
                  regexp_replace(left(reason, 200), '[0-9]+', 'N', 'g') AS "reason!",
                  count(*) AS "count!", min(parked_at) AS "first!", max(parked_at) AS "last!"
           FROM parked WHERE id = ANY($1)
           GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 1, 2, 4"#,
        ids
    )
    .fetch_all(pool)
    .await
}

/// Open parked messages per service (for the gauge).
pub async fn parked_open_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT service, count(*) AS "n!" FROM parked WHERE state = 'parked' GROUP BY service"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.service, r.n)).collect())
}

/// Marks the selected parked messages purged (kept for the audit; never re-sent).
pub async fn purge_parked(
    conn: &mut PgConnection,
    ids: &[i64],
    audit_id: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE parked SET state = 'purged', state_at = now(), audit_id = $2 \
         WHERE id = ANY($1) AND state = 'parked'",
        ids,
        audit_id
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// A new audit row.
#[derive(Clone, Debug)]
pub struct NewAudit<'a> {
    pub action: &'a str,
    pub dry_run: bool,
    pub actor: &'a str,
    pub os_user: Option<&'a str>,
    pub reason: &'a str,
    pub selector: Value,
    pub matched: i32,
    pub state: &'a str,
}

pub async fn insert_audit(conn: &mut PgConnection, a: &NewAudit<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO audit (action, dry_run, actor, os_user, reason, selector, matched, state, \
         finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         CASE WHEN $8 = 'done' THEN now() END) RETURNING id",
        a.action,
        a.dry_run,
        a.actor,
        a.os_user,
        a.reason,
        a.selector,
        a.matched,
        a.state
    )
    .fetch_one(&mut *conn)
    .await
}

/// The items of a replay or re-drive (in order), before anything is sent.
pub async fn insert_audit_items(
    conn: &mut PgConnection,
    audit_id: i64,
    source_ids: &[i64],
    services: &[String],
    routing_keys: &[String],
    message_ids: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_items (audit_id, seq, source_id, service, routing_key, \
         message_id_before) \
         SELECT $1, (t.ord - 1)::int4, t.sid, t.svc, t.rk, NULLIF(t.mid, '') \
         FROM UNNEST($2::int8[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY \
           AS t(sid, svc, rk, mid, ord)",
        audit_id,
        source_ids,
        services,
        routing_keys,
        message_ids
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets the done count of a purge or a dry run.
pub async fn set_audit_done(
    conn: &mut PgConnection,
    audit_id: i64,
    done: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE audit SET done = $2, state = 'done', finished_at = now() WHERE id = $1",
        audit_id,
        done
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An audit row as read back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    pub action: String,
    pub dry_run: bool,
    pub actor: String,
    pub os_user: Option<String>,
    pub reason: String,
    pub selector: Value,
    pub matched: i32,
    pub done: i32,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn audit(pool: &PgPool, id: i64) -> Result<Option<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, action, dry_run, actor, os_user, reason, selector, matched, done, state, \
         started_at, finished_at FROM audit WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}

pub async fn audits(pool: &PgPool, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, action, dry_run, actor, os_user, reason, selector, matched, done, state, \
         started_at, finished_at FROM audit ORDER BY id DESC LIMIT $1",
        limit
    )
    .fetch_all(pool)
    .await
}

/// Replays left `running` by a process that stopped (resumed at start).
pub async fn running_audits(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM audit WHERE state IN ('running', 'interrupted') AND NOT dry_run \
         AND action IN ('replay', 'redrive') ORDER BY id"
    )
    .fetch_all(pool)
    .await
}

pub async fn set_audit_state(pool: &PgPool, id: i64, state: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE audit SET state = $2, \
         finished_at = CASE WHEN $2 = 'done' THEN now() ELSE finished_at END WHERE id = $1",
        id,
        state
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The message ids before and after of one audit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditItem {
    pub seq: i32,
    pub source_id: i64,
    pub service: String,
    pub routing_key: String,
    pub message_id_before: Option<String>,
    pub message_id_after: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

pub async fn audit_items(pool: &PgPool, audit_id: i64) -> Result<Vec<AuditItem>, sqlx::Error> {
    sqlx::query_as!(
        AuditItem,
        "SELECT seq, source_id, service, routing_key, message_id_before, message_id_after, \
         sent_at FROM audit_items WHERE audit_id = $1 ORDER BY seq",
        audit_id
    )
    .fetch_all(pool)
    .await
}

/// What a replay sends next: the stored message of each unsent item.
#[derive(Clone, Debug)]
pub struct PendingItem {
    pub seq: i32,
    pub source_id: i64,
    pub service: String,
    pub routing_key: String,
    pub work_queue: Option<String>,
    pub properties: Option<Value>,
    pub headers: Value,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub traceparent: Option<String>,
}

/// The next unsent items of a replay (from parking).
pub async fn pending_replay_items(
    pool: &PgPool,
    audit_id: i64,
    limit: i64,
) -> Result<Vec<PendingItem>, sqlx::Error> {
    sqlx::query_as!(
        PendingItem,
        r#"SELECT i.seq, i.source_id, i.service, i.routing_key,
                  p.work_queue AS "work_queue?", p.properties AS "properties?", p.headers,
                  p.body, p.message_id, NULL::text AS traceparent
           FROM audit_items i JOIN parked p ON p.id = i.source_id
           WHERE i.audit_id = $1 AND i.sent_at IS NULL ORDER BY i.seq LIMIT $2"#,
        audit_id,
        limit
    )
    .fetch_all(pool)
    .await
}

/// The next unsent items of a re-drive (from the journal).
pub async fn pending_redrive_items(
    pool: &PgPool,
    audit_id: i64,
    limit: i64,
) -> Result<Vec<PendingItem>, sqlx::Error> {
    sqlx::query_as!(
        PendingItem,
        r#"SELECT i.seq, i.source_id, i.service, i.routing_key,
                  NULL::text AS work_queue, NULL::jsonb AS properties, j.headers, j.body,
                  j.message_id, j.traceparent
           FROM audit_items i JOIN journal j ON j.id = i.source_id
           WHERE i.audit_id = $1 AND i.sent_at IS NULL ORDER BY i.seq LIMIT $2"#,
        audit_id,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Records one item as sent (and its parked message as replayed) in one transaction.
pub async fn mark_item_sent(
    pool: &PgPool,
    audit_id: i64,
    seq: i32,
    message_id_after: &str,
    parked_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query!(
        "UPDATE audit_items SET sent_at = now(), message_id_after = $3 \
         WHERE audit_id = $1 AND seq = $2 AND sent_at IS NULL",
        audit_id,
        seq,
        message_id_after
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        if let Some(id) = parked_id {
            sqlx::query!(
                "UPDATE parked SET state = 'replayed', state_at = now(), audit_id = $2 \
                 WHERE id = $1",
                id,
                audit_id
            )
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query!("UPDATE audit SET done = done + 1 WHERE id = $1", audit_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// A monitoring report as received.
#[derive(Clone, Debug)]
pub struct NewReport {
    pub sender: String,
    pub content_type: Option<String>,
    pub raw: Vec<u8>,
    pub topic: Option<String>,
    pub body: Option<String>,
    pub verdict: String,
    pub verdict_detail: Option<String>,
    pub body_sha256: Option<String>,
    pub order_codes: Vec<i64>,
    pub state: String,
}

pub async fn insert_report(pool: &PgPool, r: &NewReport) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO monitor_reports (sender, content_type, raw, topic, body, verdict, \
         verdict_detail, body_sha256, order_codes, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        r.sender,
        r.content_type,
        r.raw,
        r.topic,
        r.body,
        r.verdict,
        r.verdict_detail,
        r.body_sha256,
        &r.order_codes,
        r.state
    )
    .fetch_one(pool)
    .await
}

/// Matches pending (and missing) reports with the journal row of the same key and body seen
/// within `window_secs` of the report; each journal row matches one report. Returns matches.
pub async fn match_reports(pool: &PgPool, window_secs: f64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"UPDATE monitor_reports r SET state = 'matched', journal_id = m.jid, resolved_at = now()
           FROM (
               SELECT DISTINCT ON (r2.id) r2.id AS rid, j.id AS jid
               FROM monitor_reports r2
               JOIN journal j ON j.routing_key = r2.topic AND j.body_sha256 = r2.body_sha256
                    AND j.seen_at BETWEEN r2.received_at - make_interval(secs => $1)
                                      AND r2.received_at + make_interval(secs => $1)
               WHERE r2.state IN ('pending', 'missing')
                 AND NOT EXISTS (SELECT 1 FROM monitor_reports r3 WHERE r3.journal_id = j.id)
               ORDER BY r2.id, j.id
           ) m
           WHERE r.id = m.rid"#,
        window_secs
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// Pending reports older than the window become `missing`. Returns how many.
pub async fn mark_missing(pool: &PgPool, window_secs: f64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE monitor_reports SET state = 'missing', resolved_at = now() \
         WHERE state = 'pending' AND received_at < now() - make_interval(secs => $1)",
        window_secs
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// A report as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportRow {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub sender: String,
    pub topic: Option<String>,
    pub body: Option<String>,
    pub verdict: String,
    pub verdict_detail: Option<String>,
    pub order_codes: Vec<i64>,
    pub state: String,
    pub journal_id: Option<i64>,
}

/// Reports in `state` (any when `None`), newest first.
pub async fn reports(
    pool: &PgPool,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<ReportRow>, sqlx::Error> {
    sqlx::query_as!(
        ReportRow,
        "SELECT id, received_at, sender, topic, body, verdict, verdict_detail, order_codes, \
         state, journal_id FROM monitor_reports WHERE ($1::text IS NULL OR state = $1) \
         ORDER BY id DESC LIMIT $2",
        state,
        limit
    )
    .fetch_all(pool)
    .await
}

pub async fn reports_for_order(
    pool: &PgPool,
    order_code: i64,
) -> Result<Vec<ReportRow>, sqlx::Error> {
    sqlx::query_as!(
        ReportRow,
        "SELECT id, received_at, sender, topic, body, verdict, verdict_detail, order_codes, \
         state, journal_id FROM monitor_reports WHERE order_codes @> ARRAY[$1::int8] \
         ORDER BY received_at, id",
        order_code
    )
    .fetch_all(pool)
    .await
}

/// Messages seen on the bus from a sender that reports (it reported something in the last
/// `lookback_secs`), older than the window, that no report matched.
pub async fn unreported(
    pool: &PgPool,
    window_secs: f64,
    lookback_secs: f64,
    limit: i64,
) -> Result<Vec<JournalRow>, sqlx::Error> {
    sqlx::query_as!(
        JournalRow,
        r#"SELECT id, seen_at, via, routing_key, msg_key, message_id, app_id, sent_at,
                  correlation_id, trace_id, decoded, decode_error, unrouted, order_codes,
                  headers, body
           FROM journal j
           WHERE j.app_id IN (SELECT DISTINCT sender FROM monitor_reports
                              WHERE received_at > now() - make_interval(secs => $2))
             AND j.seen_at < now() - make_interval(secs => $1)
             AND j.seen_at > now() - make_interval(secs => $2)
             AND NOT EXISTS (SELECT 1 FROM monitor_reports r WHERE r.journal_id = j.id)
           ORDER BY j.id LIMIT $3"#,
        window_secs,
        lookback_secs,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Report counts per state (for the gauges).
pub async fn report_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows =
        sqlx::query!(r#"SELECT state, count(*) AS "n!" FROM monitor_reports GROUP BY state"#)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
}
