//! The HTTP handlers. Every POST runs in one transaction with its outbox rows (through
//! [`idempotency::run`]); HTTP handlers never publish directly.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use orderbus_bus::Outbox;
use orderbus_contracts as c;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool, Row};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use super::idempotency::{self, Reply};
use super::types::*;
use crate::machine::{
    exchange_step, order_step, return_step, ExchangeEvent, ExchangeState, MachineState, OrderEvent,
    OrderState, Outcome, ReturnEvent, ReturnState,
};
use crate::metrics as m;
use crate::store::{self, Address, OrderHead, Source};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    pub pool: PgPool,
}

fn parse_id(field: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::invalid(field, "must be a positive integer"))
}

fn cents_text(cents: i64) -> String {
    c::Decimal::from_cents(cents).as_str().to_owned()
}

fn cents(field: &str, v: &str) -> Result<i64, ApiError> {
    amount_cents(field, v).map_err(|(f, msg)| ApiError::invalid(f, msg))
}

fn decimal(text: &str) -> Result<c::Decimal, ApiError> {
    c::Decimal::parse(text)
        .ok_or_else(|| ApiError::invalid("amount", format!("bad amount {text:?}")))
}

async fn must_order(conn: &mut PgConnection, code: i64) -> Result<OrderHead, ApiError> {
    store::lock_order(conn, code)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {code}")))
}

// ---------------------------------------------------------------------------------------------
// POST /orders
// ---------------------------------------------------------------------------------------------

/// Create an order (→ `order.submit`; JIT split: the parent and each child get `order.submit`,
/// children with `parent_order_code`).
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key + same request → same response, no second order")),
    responses(
        (status = 201, body = Created),
        (status = 400, body = ErrorBody, description = "Invalid field (named in `field`)"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Idempotency-Key reused with a different request"),
    )
)]
pub async fn create_order(
    State(app): State<App>,
    headers: HeaderMap,
    body: ApiJson<CreateOrder>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(create_order_tx(conn, value))
    })
    .await
}

struct NewOrder<'a> {
    code: i64,
    uid: i64,
    parent: Option<i64>,
    is_split_parent: bool,
    amount_cents: i64,
    shipping_cents: i64,
    address: &'a Address,
    remark: &'a str,
    items: Vec<&'a OrderItemInput>,
}

async fn insert_order(conn: &mut PgConnection, o: &NewOrder<'_>) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO orders (order_code, uid, parent_order_code, is_split_parent, status, order_amount, shipping_cost, address, remark) \
         VALUES ($1, $2, $3, $4, $5, $6::numeric, $7::numeric, $8, $9)",
    )
    .bind(o.code)
    .bind(o.uid)
    .bind(o.parent)
    .bind(o.is_split_parent)
    .bind(OrderState::PendingPayment.as_str())
    .bind(cents_text(o.amount_cents))
    .bind(cents_text(o.shipping_cents))
    .bind(serde_json::to_value(o.address).unwrap_or(Value::Null))
    .bind(o.remark)
    .execute(&mut *conn)
    .await?;
    for (i, it) in o.items.iter().enumerate() {
        sqlx::query(
            "INSERT INTO order_items (order_code, line_no, product_sku, product_skn, warehouse_id, buy_number, last_price) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::numeric)",
        )
        .bind(o.code)
        .bind(i as i32 + 1)
        .bind(it.product_sku)
        .bind(it.product_skn)
        .bind(it.warehouse_id)
        .bind(it.quantity)
        .bind(&it.unit_price)
        .execute(&mut *conn)
        .await?;
    }
    let submit = c::OrderSubmit {
        uid: o.uid,
        order_code: o.code,
        parent_order_code: o.parent,
        create_time: chrono::Utc::now().timestamp(),
        order_amount: c::Decimal::from_cents(o.amount_cents),
        shipping_cost: c::Decimal::from_cents(o.shipping_cents),
        delivery_address: c::SubmitAddress {
            user_name: o.address.user_name.clone(),
            mobile: o.address.mobile.clone(),
            province: o.address.province.clone(),
            city: o.address.city.clone(),
            district: o.address.district.clone(),
            address: o.address.address.clone(),
            zip_code: o.address.zip_code.clone(),
            email: o.address.email.clone(),
        },
        goods: o
            .items
            .iter()
            .map(|it| {
                Ok(c::SubmitGoods {
                    product_sku: it.product_sku,
                    product_skn: it.product_skn,
                    warehouse_id: it.warehouse_id,
                    buy_number: it.quantity,
                    last_price: decimal(&it.unit_price)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        remark: o.remark.to_owned(),
    };
    Outbox::new().send(conn, &submit).await?;
    let detail = json!({ "parent_order_code": o.parent, "split_parent": o.is_split_parent, "order_amount": cents_text(o.amount_cents) });
    store::record(
        conn,
        store::Entry {
            order_code: o.code,
            subject: "order".into(),
            source: &Source::http(),
            event: "created",
            applied: true,
            reason: None,
            before: None,
            after: Some(OrderState::PendingPayment.as_str()),
            detail,
        },
    )
    .await?;
    Ok(())
}

fn line_cents(it: &OrderItemInput) -> Result<i64, ApiError> {
    let unit = cents("unit_price", &it.unit_price)?;
    unit.checked_mul(it.quantity)
        .ok_or_else(|| ApiError::invalid("items", "amount overflow"))
}

async fn create_order_tx(conn: &mut PgConnection, req: CreateOrder) -> Result<Reply, ApiError> {
    let shipping = cents("shipping_cost", &req.shipping_cost)?;
    let mut by_warehouse: BTreeMap<i64, Vec<&OrderItemInput>> = BTreeMap::new();
    let mut goods_total = 0i64;
    for it in &req.items {
        by_warehouse.entry(it.warehouse_id).or_default().push(it);
        goods_total = goods_total
            .checked_add(line_cents(it)?)
            .ok_or_else(|| ApiError::invalid("items", "amount overflow"))?;
    }
    let split = by_warehouse.len() > 1;
    let code = store::next_order_code(conn).await?;
    insert_order(
        conn,
        &NewOrder {
            code,
            uid: req.uid,
            parent: None,
            is_split_parent: split,
            amount_cents: goods_total + shipping,
            shipping_cents: shipping,
            address: &req.delivery_address,
            remark: &req.remark,
            items: req.items.iter().collect(),
        },
    )
    .await?;
    let mut children = Vec::new();
    if split {
        // Shipping is charged once: to the first child (lowest warehouse id), so the children's
        // amounts add up to the parent's.
        for (i, (_, items)) in by_warehouse.into_iter().enumerate() {
            let child_shipping = if i == 0 { shipping } else { 0 };
            let mut total = child_shipping;
            for it in &items {
                total += line_cents(it)?;
            }
            let child = store::next_order_code(conn).await?;
            insert_order(
                conn,
                &NewOrder {
                    code: child,
                    uid: req.uid,
                    parent: Some(code),
                    is_split_parent: false,
                    amount_cents: total,
                    shipping_cents: child_shipping,
                    address: &req.delivery_address,
                    remark: &req.remark,
                    items,
                },
            )
            .await?;
            children.push(child);
        }
    }
    m::order_created(split, children.len());
    let body = Created {
        order_code: code,
        status: OrderState::PendingPayment.as_str().into(),
        child_order_codes: children,
    };
    Ok((
        StatusCode::CREATED,
        serde_json::to_value(body).unwrap_or(Value::Null),
    ))
}

// ---------------------------------------------------------------------------------------------
// GET /orders/{order_code}, GET /orders
// ---------------------------------------------------------------------------------------------

/// An order with its status, items, shipments, invoice, exchanges, returns and timeline.
#[utoipa::path(
    get, path = "/orders/{order_code}", tag = "orders",
    params(("order_code" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody))
)]
pub async fn get_order(
    State(app): State<App>,
    Path(code): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let code = parse_id("order_code", &code)?;
    let mut conn = app.pool.acquire().await?;
    load_view(&mut conn, code)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("order {code}")))
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339()
}

/// Reads the full view of an order (also used by tests through the API).
pub async fn load_view(conn: &mut PgConnection, code: i64) -> Result<Option<OrderView>, ApiError> {
    let Some(row) = sqlx::query(
        "SELECT order_code, uid, parent_order_code, kind, status, order_amount::text AS order_amount, \
         shipping_cost::text AS shipping_cost, paid_amount::text AS paid_amount, address, remark, \
         invoice_pdf_url, invoice_type, created_at FROM orders WHERE order_code = $1",
    )
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let state = OrderState::parse(&status);
    let kind: String = row.try_get("kind")?;
    let children: Vec<i64> = sqlx::query_scalar(
        "SELECT order_code FROM orders WHERE parent_order_code = $1 ORDER BY order_code",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let items = sqlx::query(
        "SELECT product_sku, product_skn, warehouse_id, buy_number, last_price::text AS last_price \
         FROM order_items WHERE order_code = $1 ORDER BY line_no",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(ItemView {
            product_sku: r.try_get("product_sku")?,
            product_skn: r.try_get("product_skn")?,
            warehouse_id: r.try_get("warehouse_id")?,
            quantity: r.try_get("buy_number")?,
            unit_price: r.try_get("last_price")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let shipments = sqlx::query(
        "SELECT kind, express_id, express_number FROM shipments WHERE order_code = $1 ORDER BY id",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(ShipmentView {
            kind: r.try_get("kind")?,
            express_id: r.try_get("express_id")?,
            express_number: r.try_get("express_number")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let invoice_name = |t: i16| if t == 1 { "red" } else { "blue" }.to_owned();
    let invoices = sqlx::query(
        "SELECT invoice_type, pdf_url FROM order_invoices WHERE order_code = $1 ORDER BY id",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(InvoiceView {
            invoice_type: invoice_name(r.try_get("invoice_type")?),
            pdf_url: r.try_get("pdf_url")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let invoice_url: Option<String> = row.try_get("invoice_pdf_url")?;
    let invoice_type: Option<i16> = row.try_get("invoice_type")?;
    let invoice = match (invoice_url, invoice_type) {
        (Some(pdf_url), Some(t)) => Some(InvoiceView {
            invoice_type: invoice_name(t),
            pdf_url,
        }),
        _ => None,
    };
    let tracking: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(t) - 'order_code' FROM tracking_events t WHERE order_code = $1 ORDER BY event_time, received_at",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let mut exchanges: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(x) FROM exchange_orders x WHERE order_code = $1 ORDER BY id",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    for x in &mut exchanges {
        let alias = x
            .get("status")
            .and_then(Value::as_str)
            .and_then(ExchangeState::parse)
            .and_then(|s| s.korean_alias());
        if let Some(obj) = x.as_object_mut() {
            obj.insert("korean_status".into(), json!(alias));
        }
    }
    // The bank card number is masked: the API is not the place to read it back.
    let returns: Vec<Value> = sqlx::query_scalar(
        "SELECT (to_jsonb(r) - 'bank_card') || jsonb_build_object('bank_card_last4', right(r.bank_card, 4)) \
         FROM return_orders r WHERE order_code = $1 ORDER BY id",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let timeline = sqlx::query(
        "SELECT subject, source, event, applied, reason, status_before, status_after, message_id, detail, at \
         FROM order_timeline WHERE order_code = $1 ORDER BY id",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(TimelineView {
            subject: r.try_get("subject")?,
            source: r.try_get("source")?,
            event: r.try_get("event")?,
            applied: r.try_get("applied")?,
            reason: r.try_get("reason")?,
            status_before: r.try_get("status_before")?,
            status_after: r.try_get("status_after")?,
            message_id: r.try_get("message_id")?,
            detail: r.try_get("detail")?,
            at: ts(r.try_get("at")?),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let address: Value = row.try_get("address")?;
    Ok(Some(OrderView {
        order_code: code,
        uid: row.try_get("uid")?,
        parent_order_code: row.try_get("parent_order_code")?,
        child_order_codes: children,
        korean_status: state
            .and_then(|s| s.korean_alias(kind == "exchange"))
            .map(str::to_owned),
        spec_code: state.and_then(|s| s.spec_code()).map(str::to_owned),
        kind,
        status,
        order_amount: row.try_get("order_amount")?,
        shipping_cost: row.try_get("shipping_cost")?,
        paid_amount: row.try_get("paid_amount")?,
        delivery_address: serde_json::from_value(address)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        remark: row.try_get("remark")?,
        items,
        shipments,
        invoice,
        invoices,
        tracking,
        exchanges,
        returns,
        timeline,
        created_at: ts(row.try_get("created_at")?),
    }))
}

/// Orders of a customer, newest first, optionally by status.
#[utoipa::path(
    get, path = "/orders", tag = "orders",
    params(
        ("uid" = i64, Query, description = "The customer"),
        ("status" = Option<String>, Query, description = "A state name, e.g. `shipped`"),
        ("limit" = Option<i64>, Query, description = "1..=200, default 50"),
    ),
    responses((status = 200, body = Vec<OrderSummary>), (status = 400, body = ErrorBody))
)]
pub async fn list_orders(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<OrderSummary>>, ApiError> {
    let uid = parse_id(
        "uid",
        q.get("uid")
            .ok_or_else(|| ApiError::invalid("uid", "required"))?,
    )?;
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(
            OrderState::parse(s)
                .ok_or_else(|| ApiError::invalid("status", format!("unknown status {s:?}")))?,
        ),
    };
    let limit = match q.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=200).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1..=200"))?,
    };
    let rows = sqlx::query(
        "SELECT order_code, uid, parent_order_code, status, order_amount::text AS order_amount, created_at \
         FROM orders WHERE uid = $1 AND ($2::text IS NULL OR status = $2) \
         ORDER BY created_at DESC, order_code DESC LIMIT $3",
    )
    .bind(uid)
    .bind(status.map(|s| s.as_str()))
    .bind(limit)
    .fetch_all(&app.pool)
    .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(OrderSummary {
                order_code: r.try_get("order_code")?,
                uid: r.try_get("uid")?,
                parent_order_code: r.try_get("parent_order_code")?,
                status: r.try_get("status")?,
                order_amount: r.try_get("order_amount")?,
                created_at: ts(r.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(list))
}

// ---------------------------------------------------------------------------------------------
// Order actions
// ---------------------------------------------------------------------------------------------

fn refused<S: std::fmt::Display + Copy>(outcome: Outcome<S>, what: &str) -> ApiError {
    match outcome {
        Outcome::NotApplied { current, why } => {
            ApiError::conflict(current, format!("cannot {what} ({why})")).because(why.as_str())
        }
        Outcome::Applied { to, .. } => ApiError::conflict(to, format!("cannot {what}")),
    }
}

fn status_reply(code: i64, status: impl std::fmt::Display) -> Reply {
    (
        StatusCode::OK,
        serde_json::to_value(StatusReply {
            order_code: code,
            status: status.to_string(),
        })
        .unwrap_or(Value::Null),
    )
}

/// Confirm receipt (→ `order.orderStatus` 700). Allowed once shipped or delivered.
#[utoipa::path(
    post, path = "/orders/{order_code}/confirm-receipt", tag = "orders",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionBody,
    responses((status = 200, body = StatusReply), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Illegal transition; `current_status` says why"))
)]
pub async fn confirm_receipt(
    State(app): State<App>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let code = parse_id("order_code", &code)?;
    let key = idempotency::key(&headers)?;
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move {
            let order = must_order(conn, code).await?;
            let check = order_step(order.status, OrderEvent::ReceiptConfirmed);
            if !matches!(check, Outcome::Applied { .. }) {
                return Err(refused(check, "confirm receipt").on(
                    code,
                    "order",
                    OrderEvent::ReceiptConfirmed.as_str(),
                ));
            }
            let out = store::offer_order_event(
                conn,
                &order,
                OrderEvent::ReceiptConfirmed,
                &Source::http(),
                json!({}),
            )
            .await?;
            Outbox::new()
                .send(
                    conn,
                    &c::OrderStatus {
                        order_code: code,
                        status: c::StorefrontOrderStatus::ReceiptConfirmed,
                    },
                )
                .await?;
            Ok(status_reply(code, out.state()))
        })
    })
    .await
}

/// Cancel (→ `order.orderStatus` 900 for the order and each JIT child). Allowed until the ERP
/// has stocked the goods.
#[utoipa::path(
    post, path = "/orders/{order_code}/cancel", tag = "orders",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionBody,
    responses((status = 200, body = StatusReply), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Illegal transition; `current_status` says why"))
)]
pub async fn cancel_order(
    State(app): State<App>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let code = parse_id("order_code", &code)?;
    let key = idempotency::key(&headers)?;
    let remark = body.value.remark.clone();
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move {
            let order = must_order(conn, code).await?;
            let check = order_step(order.status, OrderEvent::UserCancel);
            if !matches!(check, Outcome::Applied { .. }) {
                return Err(refused(check, "cancel").on(
                    code,
                    "order",
                    OrderEvent::UserCancel.as_str(),
                ));
            }
            let children = if order.is_split_parent {
                store::lock_children(conn, code).await?
            } else {
                Vec::new()
            };
            // Children already cancelled (e.g. by customer service) are left as they are.
            let mut targets = vec![order];
            for child in children {
                match order_step(child.status, OrderEvent::UserCancel) {
                    Outcome::Applied { .. } => targets.push(child),
                    Outcome::NotApplied { current, .. }
                        if current.is_terminal() && current != OrderState::ReceiptConfirmed => {}
                    other => {
                        return Err(refused(
                            other,
                            &format!("cancel child order {}", child.order_code),
                        )
                        .on(code, "order", OrderEvent::UserCancel.as_str()))
                    }
                }
            }
            let detail = json!({ "remark": remark });
            let mut status = OrderState::CancelledByUser;
            for t in &targets {
                let out = store::offer_order_event(
                    conn,
                    t,
                    OrderEvent::UserCancel,
                    &Source::http(),
                    detail.clone(),
                )
                .await?;
                if t.order_code == code {
                    status = out.state();
                }
                Outbox::new()
                    .send(
                        conn,
                        &c::OrderStatus {
                            order_code: t.order_code,
                            status: c::StorefrontOrderStatus::UserCancelled,
                        },
                    )
                    .await?;
            }
            Ok(status_reply(code, status))
        })
    })
    .await
}

/// Change the delivery address (→ `order.deliveryAddress`, one element per order: the order
/// and, for a JIT parent, each child). Allowed before shipping.
#[utoipa::path(
    post, path = "/orders/{order_code}/address", tag = "orders",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ChangeAddress,
    responses((status = 200, body = StatusReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Already shipped / closed"))
)]
pub async fn change_address(
    State(app): State<App>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ChangeAddress>,
) -> Result<Response, ApiError> {
    let code = parse_id("order_code", &code)?;
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(async move {
            let order = must_order(conn, code).await?;
            let mut targets = vec![order.clone()];
            if order.is_split_parent {
                targets.extend(store::lock_children(conn, code).await?);
            }
            for t in &targets {
                if !t.status.address_changeable() {
                    return Err(ApiError::conflict(
                        t.status,
                        format!("order {} can no longer change its address", t.order_code),
                    )
                    .on(t.order_code, "order", "address_changed"));
                }
            }
            let new = value.delivery_address;
            let stored = serde_json::to_value(&new).unwrap_or(Value::Null);
            let mut wire = Vec::new();
            for t in &targets {
                sqlx::query(
                    "UPDATE orders SET address = $2, updated_at = now() WHERE order_code = $1",
                )
                .bind(t.order_code)
                .bind(&stored)
                .execute(&mut *conn)
                .await?;
                store::record_note(
                    conn,
                    t,
                    &Source::http(),
                    "address_changed",
                    None,
                    json!({ "from": t.address, "to": new }),
                )
                .await?;
                wire.push(new.to_wire(t.order_code, t.parent_order_code));
            }
            Outbox::new()
                .send(conn, &c::CustomerAddressChange(wire))
                .await?;
            Ok(status_reply(code, order.status))
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Exchanges and returns
// ---------------------------------------------------------------------------------------------

struct Line {
    product_skn: i64,
    last_price: String,
}

async fn order_lines(conn: &mut PgConnection, code: i64) -> Result<HashMap<i64, Line>, ApiError> {
    let rows = sqlx::query(
        "SELECT product_sku, product_skn, last_price::text AS last_price FROM order_items WHERE order_code = $1",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let mut map = HashMap::new();
    for r in rows {
        map.insert(
            r.try_get("product_sku")?,
            Line {
                product_skn: r.try_get("product_skn")?,
                last_price: r.try_get("last_price")?,
            },
        );
    }
    Ok(map)
}

fn after_sale_reply(id: i64, code: i64, status: impl std::fmt::Display, created: bool) -> Reply {
    (
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        serde_json::to_value(AfterSaleReply {
            id,
            order_code: code,
            status: status.to_string(),
        })
        .unwrap_or(Value::Null),
    )
}

async fn after_sale_order(
    conn: &mut PgConnection,
    code: i64,
    event: &'static str,
) -> Result<OrderHead, ApiError> {
    let order = must_order(conn, code).await?;
    if order.is_split_parent {
        return Err(ApiError::conflict(
            order.status,
            "exchanges and returns are made on the child orders of a split order",
        )
        .on(code, "order", event));
    }
    if !order.status.after_sale_allowed() {
        return Err(ApiError::conflict(
            order.status,
            "exchanges and returns need a delivered order",
        )
        .on(code, "order", event));
    }
    Ok(order)
}

/// Create an exchange (→ `order.createChangeOrder`). Allowed on delivered orders.
#[utoipa::path(
    post, path = "/orders/{order_code}/exchanges", tag = "after-sale",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateExchange,
    responses((status = 201, body = AfterSaleReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn create_exchange(
    State(app): State<App>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: ApiJson<CreateExchange>,
) -> Result<Response, ApiError> {
    let code = parse_id("order_code", &code)?;
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: req,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(async move {
            let order = after_sale_order(conn, code, "exchange_requested").await?;
            let lines = order_lines(conn, code).await?;
            let mut goods = Vec::new();
            for (i, g) in req.goods.iter().enumerate() {
                let line = lines.get(&g.product_sku).ok_or_else(|| {
                    ApiError::invalid(format!("goods[{i}].product_sku"), format!("{} is not a line of order {code}", g.product_sku))
                })?;
                goods.push(c::ChangeGoods {
                    exchange_reason: g.exchange_reason.clone(),
                    goods_type: g.goods_type.clone(),
                    last_price: decimal(&line.last_price)?,
                    new_goods_id: g.new_goods_id,
                    new_product_skc: g.new_product_skc,
                    new_product_sku: g.new_product_sku,
                    product_skc: g.product_skc,
                    product_skn: line.product_skn,
                    product_sku: g.product_sku,
                    remark: g.remark.clone(),
                });
            }
            let addr = req.address.clone().unwrap_or_else(|| order.address.clone());
            let id = store::next_after_sale_id(conn).await?;
            let msg = c::CreateChangeOrder {
                id,
                city: addr.city.clone(),
                area_code: addr.area_code.clone(),
                address: addr.address.clone(),
                consignee_name: addr.user_name.clone(),
                county: addr.district.clone(),
                delivery_tpye: req.delivery_type,
                email: addr.email.clone(),
                exchange_mode: req.exchange_mode,
                mobile: addr.mobile.clone(),
                order_code: code,
                // The chain's first order: for a replacement order, the order it replaced.
                init_order_code: code,
                source_order_code: code,
                province: addr.province.clone(),
                receipt_time: req.receipt_time.clone(),
                remark: req.remark.clone(),
                uid: order.uid,
                zip_code: addr.zip_code.clone(),
                goods,
            };
            sqlx::query(
                "INSERT INTO exchange_orders (id, order_code, uid, status, delivery_type, exchange_mode, receipt_time, remark, address, goods) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id)
            .bind(code)
            .bind(order.uid)
            .bind(ExchangeState::Requested.as_str())
            .bind(req.delivery_type)
            .bind(req.exchange_mode)
            .bind(&req.receipt_time)
            .bind(&req.remark)
            .bind(serde_json::to_value(&addr).unwrap_or(Value::Null))
            .bind(serde_json::to_value(&msg.goods).unwrap_or(Value::Null))
            .execute(&mut *conn)
            .await?;
            store::record(conn, store::Entry {
                order_code: code,
                subject: format!("exchange:{id}"),
                source: &Source::http(),
                event: "created",
                applied: true,
                reason: None,
                before: None,
                after: Some(ExchangeState::Requested.as_str()),
                detail: json!({ "goods": msg.goods.len() }),
            }).await?;
            Outbox::new().send(conn, &msg).await?;
            Ok(after_sale_reply(id, code, ExchangeState::Requested, true))
        })
    })
    .await
}

/// Create a return (→ `order.createRefundOrder`). Allowed on delivered orders.
#[utoipa::path(
    post, path = "/orders/{order_code}/returns", tag = "after-sale",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateReturn,
    responses((status = 201, body = AfterSaleReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn create_return(
    State(app): State<App>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: ApiJson<CreateReturn>,
) -> Result<Response, ApiError> {
    let code = parse_id("order_code", &code)?;
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: req,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(async move {
            let order = after_sale_order(conn, code, "return_requested").await?;
            let lines = order_lines(conn, code).await?;
            let mut goods = Vec::new();
            for (i, g) in req.goods.iter().enumerate() {
                let line = lines.get(&g.product_sku).ok_or_else(|| {
                    ApiError::invalid(format!("goods[{i}].product_sku"), format!("{} is not a line of order {code}", g.product_sku))
                })?;
                goods.push(c::ReturnedGoods {
                    product_sku: g.product_sku,
                    goods_type: g.goods_type.clone(),
                    last_price: decimal(&line.last_price)?,
                    returned_reason: g.returned_reason.clone(),
                    remark: g.remark.clone(),
                    evidence_images: g.evidence_images.clone(),
                });
            }
            let id = store::next_after_sale_id(conn).await?;
            let msg = c::CreateRefundOrder {
                uid: order.uid,
                alipay_account: req.alipay_account.clone(),
                alipay_name: req.alipay_name.clone(),
                area_code: req.area_code.clone(),
                bank_card: req.bank_card.clone(),
                bank_id: req.bank_id.clone(),
                head_bank_name: req.head_bank_name.clone(),
                bank_name: req.bank_name.clone(),
                city: req.city.clone(),
                county: req.county.clone(),
                order_code: code,
                payee_name: req.payee_name.clone(),
                province: req.province.clone(),
                remark: req.remark.clone(),
                return_amount_mode: req.return_amount_mode.clone(),
                order_returned_id: id,
                returned_goods_list: goods,
            };
            sqlx::query(
                "INSERT INTO return_orders (id, order_code, uid, status, return_amount_mode, payee_name, bank_id, bank_name, \
                 head_bank_name, bank_card, alipay_account, alipay_name, area_code, province, city, county, remark, goods) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            )
            .bind(id)
            .bind(code)
            .bind(order.uid)
            .bind(ReturnState::Submitted.as_str())
            .bind(&req.return_amount_mode)
            .bind(&req.payee_name)
            .bind(&req.bank_id)
            .bind(&req.bank_name)
            .bind(&req.head_bank_name)
            .bind(&req.bank_card)
            .bind(&req.alipay_account)
            .bind(&req.alipay_name)
            .bind(&req.area_code)
            .bind(&req.province)
            .bind(&req.city)
            .bind(&req.county)
            .bind(&req.remark)
            .bind(serde_json::to_value(&msg.returned_goods_list).unwrap_or(Value::Null))
            .execute(&mut *conn)
            .await?;
            store::record(conn, store::Entry {
                order_code: code,
                subject: format!("return:{id}"),
                source: &Source::http(),
                event: "created",
                applied: true,
                reason: None,
                before: None,
                after: Some(ReturnState::Submitted.as_str()),
                detail: json!({ "goods": msg.returned_goods_list.len() }),
            }).await?;
            Outbox::new().send(conn, &msg).await?;
            Ok(after_sale_reply(id, code, ReturnState::Submitted, true))
        })
    })
    .await
}

/// The customer's waybill for the goods sent back (→ `order.updateChangeRefundOrderExpressInfo`,
/// `type: change`). Allowed once the ERP approved the exchange.
#[utoipa::path(
    post, path = "/exchanges/{id}/waybill", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = Waybill,
    responses((status = 200, body = AfterSaleReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn exchange_waybill(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiJson<Waybill>,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: w,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(async move {
            let x = store::lock_exchange(conn, id, false)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("exchange {id}")))?;
            let (Some(erp_id), ExchangeState::Approved) = (x.erp_exchange_id, x.status) else {
                return Err(ApiError::conflict(x.status, "a waybill is accepted once the ERP has approved the exchange")
                    .on(x.order_code, format!("exchange:{id}"), "customer_waybill"));
            };
            sqlx::query("UPDATE exchange_orders SET express_id = $2, express_name = $3, express_number = $4, updated_at = now() WHERE id = $1")
                .bind(id).bind(w.express_id).bind(&w.express_name).bind(&w.express_number)
                .execute(&mut *conn).await?;
            after_sale_note(conn, x.order_code, format!("exchange:{id}"), x.status.as_str(), &w).await?;
            let msg = c::AfterSaleExpressInfo::Change(c::ChangeExpressInfo {
                id,
                uid: x.uid,
                apply_id: erp_id,
                express_number: w.express_number.clone(),
                express_name: w.express_name.clone(),
                express_id: w.express_id,
            });
            Outbox::new().send(conn, &msg).await?;
            Ok(after_sale_reply(id, x.order_code, x.status, false))
        })
    })
    .await
}

async fn after_sale_note(
    conn: &mut PgConnection,
    order_code: i64,
    subject: String,
    status: &str,
    w: &Waybill,
) -> Result<(), ApiError> {
    store::record(conn, store::Entry {
        order_code,
        subject,
        source: &Source::http(),
        event: "customer_waybill",
        applied: true,
        reason: None,
        before: Some(status),
        after: Some(status),
        detail: json!({ "express_id": w.express_id, "express_name": w.express_name, "express_number": w.express_number }),
    }).await?;
    Ok(())
}

/// The customer's waybill for a return (→ `order.updateChangeRefundOrderExpressInfo`,
/// `type: refund`). Allowed once the ERP approved the return.
#[utoipa::path(
    post, path = "/returns/{id}/waybill", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = Waybill,
    responses((status = 200, body = AfterSaleReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn return_waybill(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiJson<Waybill>,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: w,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(async move {
            let r = store::lock_return(conn, id, false)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("return {id}")))?;
            let (Some(erp_id), ReturnState::Approved) = (r.erp_returned_id, r.status) else {
                return Err(ApiError::conflict(r.status, "a waybill is accepted once the ERP has approved the return")
                    .on(r.order_code, format!("return:{id}"), "customer_waybill"));
            };
            sqlx::query("UPDATE return_orders SET express_id = $2, express_name = $3, express_number = $4, updated_at = now() WHERE id = $1")
                .bind(id).bind(w.express_id).bind(&w.express_name).bind(&w.express_number)
                .execute(&mut *conn).await?;
            after_sale_note(conn, r.order_code, format!("return:{id}"), r.status.as_str(), &w).await?;
            let msg = c::AfterSaleExpressInfo::Refund(c::RefundExpressInfo {
                order_returned_id: id,
                uid: r.uid,
                apply_id: erp_id,
                express_number: w.express_number.clone(),
                express_name: w.express_name.clone(),
                express_id: w.express_id,
            });
            Outbox::new().send(conn, &msg).await?;
            Ok(after_sale_reply(id, r.order_code, r.status, false))
        })
    })
    .await
}

/// The customer cancels an exchange (`Change`) or a return (`Refund`): the machine must allow
/// it and the ERP must have acknowledged the request (its id is what `order.changeRefundCancel`
/// names). The event and the message commit together.
async fn cancel_after_sale(
    conn: &mut PgConnection,
    id: i64,
    kind: c::AfterSaleKind,
) -> Result<Reply, ApiError> {
    let (order_code, erp_id, status) = match kind {
        c::AfterSaleKind::Change => {
            let x = store::lock_exchange(conn, id, false)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("exchange {id}")))?;
            let event = ExchangeEvent::UserCancel;
            let check = exchange_step(x.status, event);
            let erp_id = cancellable(
                check,
                x.status,
                x.erp_exchange_id,
                x.order_code,
                kind,
                id,
                event.as_str(),
            )?;
            let out =
                store::offer_exchange_event(conn, &x, event, &Source::http(), json!({})).await?;
            (x.order_code, erp_id, out.state().to_string())
        }
        c::AfterSaleKind::Refund => {
            let r = store::lock_return(conn, id, false)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("return {id}")))?;
            let event = ReturnEvent::UserCancel;
            let check = return_step(r.status, event);
            let erp_id = cancellable(
                check,
                r.status,
                r.erp_returned_id,
                r.order_code,
                kind,
                id,
                event.as_str(),
            )?;
            let out =
                store::offer_return_event(conn, &r, event, &Source::http(), json!({})).await?;
            (r.order_code, erp_id, out.state().to_string())
        }
    };
    Outbox::new()
        .send(
            conn,
            &c::ChangeRefundCancel {
                id: erp_id,
                status: c::AfterSaleCancelStatus::UserCancelled,
                kind,
            },
        )
        .await?;
    Ok(after_sale_reply(id, order_code, status, false))
}

/// The ERP's id of an after-sale request the customer may cancel, or the 409 saying why not
/// (also written on the timeline).
fn cancellable<S: std::fmt::Display + Copy>(
    check: Outcome<S>,
    current: S,
    erp_id: Option<i64>,
    order_code: i64,
    kind: c::AfterSaleKind,
    id: i64,
    event: &'static str,
) -> Result<i64, ApiError> {
    let noun = match kind {
        c::AfterSaleKind::Change => "exchange",
        c::AfterSaleKind::Refund => "return",
    };
    let subject = format!("{noun}:{id}");
    if !matches!(check, Outcome::Applied { .. }) {
        return Err(refused(check, &format!("cancel the {noun}")).on(order_code, subject, event));
    }
    erp_id.ok_or_else(|| {
        ApiError::conflict(
            current,
            format!("the ERP has not acknowledged the {noun} yet; cancel once it has"),
        )
        .on(order_code, subject, event)
    })
}

/// Cancel an exchange (→ `order.changeRefundCancel`, type 2). Needs the ERP's id (after its
/// `erp.createChangeOrder`) and a state before the goods are back.
#[utoipa::path(
    post, path = "/exchanges/{id}/cancel", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionBody,
    responses((status = 200, body = AfterSaleReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn cancel_exchange(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let key = idempotency::key(&headers)?;
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move { cancel_after_sale(conn, id, c::AfterSaleKind::Change).await })
    })
    .await
}

/// Cancel a return (→ `order.changeRefundCancel`, type 1). Needs the ERP's id and a state
/// before the goods are sent back.
#[utoipa::path(
    post, path = "/returns/{id}/cancel", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionBody,
    responses((status = 200, body = AfterSaleReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn cancel_return(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let key = idempotency::key(&headers)?;
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move { cancel_after_sale(conn, id, c::AfterSaleKind::Refund).await })
    })
    .await
}
