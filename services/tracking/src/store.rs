//! Every SQL statement of the tracking service (compile-checked `sqlx::query!` macros).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// Seed 000's shipment statuses.
pub const OS02: &str = "OS02";
pub const OS03: &str = "OS03";
pub const OS30: &str = "OS30";
pub const OS31: &str = "OS31";

/// A shipment as the event logic needs it.
#[derive(Debug, Clone)]
pub struct Shipment {
    pub id: i64,
    pub order_code: i64,
    pub uid: i64,
    pub kind: String,
    pub order_status: String,
    pub express_id: i64,
    pub waybill: String,
    pub waybill_normalised: String,
    pub stage: Option<String>,
    pub exception: bool,
}

/// What a 600 (or a first SHOPLINE report) creates.
pub struct NewShipment<'a> {
    pub order_code: i64,
    pub uid: i64,
    pub redelivery: bool,
    pub express_id: i64,
    pub carrier_code: Option<&'a str>,
    pub waybill: &'a str,
    pub waybill_normalised: &'a str,
    pub source: &'a str,
    pub channel: &'a str,
}

/// Records an exchange's replacement order; `false` when it was known.
pub async fn insert_replacement(
    conn: &mut PgConnection,
    new_order_code: i64,
    source_order_code: i64,
    exchange_id: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "INSERT INTO trk_replacement_orders (new_order_code, source_order_code, exchange_id) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        new_order_code,
        source_order_code,
        exchange_id,
    )
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn is_replacement(conn: &mut PgConnection, order_code: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM trk_replacement_orders WHERE new_order_code = $1) AS "e!""#,
        order_code
    )
    .fetch_one(&mut *conn)
    .await
}

/// A 600 that overtook its erp.createChangeOrder made a delivery: it is a re-delivery.
pub async fn mark_redelivery(conn: &mut PgConnection, order_code: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE trk_shipments SET kind = 'redelivery', updated_at = now(), \
         order_status = CASE order_status WHEN 'OS02' THEN 'OS30' WHEN 'OS03' THEN 'OS31' ELSE order_status END \
         WHERE order_code = $1 AND kind = 'delivery'",
        order_code
    )
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected())
}

/// Inserts a shipment; `None` when the order already has this waybill.
pub async fn insert_shipment(
    conn: &mut PgConnection,
    s: &NewShipment<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let (kind, status) = if s.redelivery {
        ("redelivery", OS30)
    } else {
        ("delivery", OS02)
    };
    sqlx::query_scalar!(
        "INSERT INTO trk_shipments (order_code, uid, kind, order_status, express_id, carrier_code, \
         waybill, waybill_normalised, source, channel) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (order_code, waybill_normalised) DO NOTHING RETURNING id",
        s.order_code,
        s.uid,
        kind,
        status,
        s.express_id,
        s.carrier_code,
        s.waybill,
        s.waybill_normalised,
        s.source,
        s.channel,
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The ERP's own 700: the order's shipping shipments are done (no more registrations).
pub async fn erp_delivered(conn: &mut PgConnection, order_code: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE trk_shipments SET updated_at = now(), completed_at = coalesce(completed_at, now()), \
         order_status = CASE order_status WHEN 'OS02' THEN 'OS03' ELSE 'OS31' END \
         WHERE order_code = $1 AND order_status IN ('OS02', 'OS30')",
        order_code
    )
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected())
}

/// A shipment the daily registration sends to SweetTracker.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: i64,
    pub order_code: i64,
    pub order_status: String,
    pub carrier_code: String,
    pub waybill_normalised: String,
}

/// Shipments still shipping (OS02 / OS30), with a waybill and a carrier code, of the online
/// channel, after `after_id` in id order.
pub async fn registration_targets(
    pool: &PgPool,
    channel: &str,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as!(
        Target,
        r#"SELECT id, order_code, order_status, carrier_code AS "carrier_code!", waybill_normalised
           FROM trk_shipments
           WHERE order_status IN ('OS02', 'OS30') AND channel = $1 AND carrier_code IS NOT NULL
             AND waybill_normalised <> '' AND stage IS DISTINCT FROM 'returned' AND id > $2
           ORDER BY id LIMIT $3"#,
        channel,
        after_id,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Shipments still shipping that cannot be registered: no carrier code in the table.
pub async fn unregistrable_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM trk_shipments
           WHERE order_status IN ('OS02', 'OS30') AND carrier_code IS NULL"#
    )
    .fetch_one(pool)
    .await
}

pub async fn record_registration(
    pool: &PgPool,
    id: i64,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE trk_shipments SET registered_at = CASE WHEN $2::text IS NULL THEN now() ELSE registered_at END, \
         registration_error = $2, updated_at = now() WHERE id = $1",
        id,
        error,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The shipments of an order, locked for the caller's transaction.
pub async fn lock_order_shipments(
    conn: &mut PgConnection,
    order_code: i64,
) -> Result<Vec<Shipment>, sqlx::Error> {
    sqlx::query_as!(
        Shipment,
        "SELECT id, order_code, uid, kind, order_status, express_id, waybill, waybill_normalised, \
         stage, exception FROM trk_shipments WHERE order_code = $1 ORDER BY id FOR UPDATE",
        order_code
    )
    .fetch_all(&mut *conn)
    .await
}

/// A new event, or `None` when the shipment already has its key (a duplicate).
pub struct NewEvent<'a> {
    pub shipment_id: i64,
    pub source: &'a str,
    pub status: &'a str,
    pub stage: Option<&'a str>,
    pub verdict: &'a str,
    pub unique_key: &'a str,
    pub published: bool,
    pub event_time: DateTime<Utc>,
    pub location: &'a str,
    pub details: &'a str,
}

pub async fn insert_event(
    conn: &mut PgConnection,
    e: &NewEvent<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO trk_events (shipment_id, source, status, stage, verdict, unique_key, published, \
         event_time, location, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (shipment_id, unique_key) DO NOTHING RETURNING id",
        e.shipment_id,
        e.source,
        e.status,
        e.stage,
        e.verdict,
        e.unique_key,
        e.published,
        e.event_time,
        e.location,
        e.details,
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Writes what an event changed on its shipment.
pub async fn update_shipment(
    conn: &mut PgConnection,
    id: i64,
    stage: Option<&str>,
    exception: bool,
    order_status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE trk_shipments SET stage = $2, exception = $3, order_status = $4, \
         last_event_at = now(), updated_at = now(), \
         completed_at = CASE WHEN $4 IN ('OS03', 'OS31') THEN coalesce(completed_at, now()) ELSE completed_at END \
         WHERE id = $1",
        id,
        stage,
        exception,
        order_status,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The order a SHOPLINE transaction belongs to.
#[derive(Debug, Clone)]
pub struct ShoplineMapping {
    pub order_code: i64,
    pub uid: i64,
    pub express_id: i64,
}

pub async fn shopline_mapping(
    conn: &mut PgConnection,
    transaction_id: &str,
) -> Result<Option<ShoplineMapping>, sqlx::Error> {
    sqlx::query_as!(
        ShoplineMapping,
        "SELECT order_code, uid, express_id FROM trk_shopline_transactions \
         WHERE channel_order_transaction_id = $1",
        transaction_id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Puts a mapping; `false` when the id already maps to another order (it is not changed).
pub async fn put_shopline_mapping(
    pool: &PgPool,
    transaction_id: &str,
    m: &ShoplineMapping,
) -> Result<bool, sqlx::Error> {
    let existing = sqlx::query_scalar!(
        "INSERT INTO trk_shopline_transactions (channel_order_transaction_id, order_code, uid, express_id) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (channel_order_transaction_id) DO UPDATE SET express_id = excluded.express_id \
         WHERE trk_shopline_transactions.order_code = excluded.order_code \
           AND trk_shopline_transactions.uid = excluded.uid \
         RETURNING order_code",
        transaction_id,
        m.order_code,
        m.uid,
        m.express_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(existing.is_some())
}

/// A shipment row for the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShipmentView {
    pub id: i64,
    pub order_code: i64,
    pub kind: String,
    pub order_status: String,
    pub express_id: i64,
    pub carrier_code: Option<String>,
    pub waybill: String,
    pub source: String,
    pub stage: Option<String>,
    pub exception: bool,
    pub created_at: DateTime<Utc>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub registered_at: Option<DateTime<Utc>>,
    pub registration_error: Option<String>,
}

/// An event row for the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventView {
    pub id: i64,
    pub shipment_id: i64,
    pub source: String,
    pub status: String,
    pub stage: Option<String>,
    pub verdict: String,
    pub unique_key: String,
    pub published: bool,
    pub event_time: DateTime<Utc>,
    pub location: String,
    pub details: String,
}

pub async fn order_shipments(
    pool: &PgPool,
    order_code: i64,
) -> Result<Vec<ShipmentView>, sqlx::Error> {
    sqlx::query_as!(
        ShipmentView,
        "SELECT id, order_code, kind, order_status, express_id, carrier_code, waybill, source, stage, \
         exception, created_at, last_event_at, registered_at, registration_error \
         FROM trk_shipments WHERE order_code = $1 ORDER BY id",
        order_code
    )
    .fetch_all(pool)
    .await
}

pub async fn order_events(pool: &PgPool, order_code: i64) -> Result<Vec<EventView>, sqlx::Error> {
    sqlx::query_as!(
        EventView,
        "SELECT e.id, e.shipment_id, e.source, e.status, e.stage, e.verdict, e.unique_key, e.published, \
         e.event_time, e.location, e.details \
         FROM trk_events e JOIN trk_shipments s ON s.id = e.shipment_id \
         WHERE s.order_code = $1 ORDER BY e.id",
        order_code
    )
    .fetch_all(pool)
    .await
}

/// Shipments still shipping whose last event (or creation, when none came) is before `before`.
pub async fn stale_shipments(
    pool: &PgPool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ShipmentView>, sqlx::Error> {
    sqlx::query_as!(
        ShipmentView,
        "SELECT id, order_code, kind, order_status, express_id, carrier_code, waybill, source, stage, \
         exception, created_at, last_event_at, registered_at, registration_error \
         FROM trk_shipments WHERE order_status IN ('OS02', 'OS30') \
           AND coalesce(last_event_at, created_at) < $1 ORDER BY id LIMIT $2",
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}

pub async fn stale_count(pool: &PgPool, before: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM trk_shipments WHERE order_status IN ('OS02', 'OS30')
           AND coalesce(last_event_at, created_at) < $1"#,
        before
    )
    .fetch_one(pool)
    .await
}
