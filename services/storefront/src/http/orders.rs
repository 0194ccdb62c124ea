//! `/orders`: create (with the JIT split), read, list, confirm receipt, cancel, change the
//! address. Every POST runs in one transaction with its outbox rows (through
//! [`idempotency::run`]); handlers never publish directly.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use orderbus_bus::Outbox;
use orderbus_contracts as c;
use serde_json::json;
use sqlx::PgConnection;

use super::error::{to_json, ApiError, ErrorBody, Subject};
use super::extract::{positive, ApiJson, ApiQuery, IdPath};
use super::idempotency::{self, Reply};
use super::read_model;
use super::split::{self, Part};
use super::support::{cents_text, decimal, must_order, refused, reply};
use super::types::*;
use super::App;
use crate::ids::OrderCode;
use crate::machine::{order_step, MachineState, OrderEvent, OrderState, Outcome};
use crate::metrics as m;
use crate::store::orders::{NewItemRow, NewOrderRow};
use crate::store::{self, Address, Source};

pub fn router() -> Router<App> {
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{order_code}", get(get_order))
        .route(
            "/orders/{order_code}/confirm-receipt",
            post(confirm_receipt),
        )
        .route("/orders/{order_code}/cancel", post(cancel_order))
        .route("/orders/{order_code}/address", post(change_address))
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
    responses((status = 201, body = Created))
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

/// One order of a submission: the parent (or only order), or a split child.
struct NewOrder<'a> {
    code: OrderCode,
    uid: i64,
    parent: Option<OrderCode>,
    is_split_parent: bool,
    part: &'a Part<'a>,
    address: &'a Address,
    remark: &'a str,
}

async fn insert_order(conn: &mut PgConnection, o: &NewOrder<'_>) -> Result<(), ApiError> {
    let amount = cents_text(o.part.amount_cents);
    let shipping = cents_text(o.part.shipping_cents);
    let address = to_json(o.address)?;
    let items: Vec<NewItemRow<'_>> = o
        .part
        .items
        .iter()
        .zip(1..)
        .map(|(it, line_no)| NewItemRow {
            line_no,
            product_sku: it.product_sku,
            product_skn: it.product_skn,
            warehouse_id: it.warehouse_id,
            quantity: it.quantity,
            unit_price: &it.unit_price,
        })
        .collect();
    store::orders::insert_order(
        conn,
        &NewOrderRow {
            code: o.code,
            uid: o.uid,
            parent: o.parent,
            is_split_parent: o.is_split_parent,
            order_amount: &amount,
            shipping_cost: &shipping,
            address: &address,
            remark: o.remark,
        },
        &items,
    )
    .await?;
    let submit = c::OrderSubmit {
        uid: o.uid,
        order_code: o.code.get(),
        parent_order_code: o.parent.map(OrderCode::get),
        create_time: chrono::Utc::now().timestamp(),
        order_amount: c::Decimal::from_cents(o.part.amount_cents),
        shipping_cost: c::Decimal::from_cents(o.part.shipping_cents),
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
            .part
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                Ok(c::SubmitGoods {
                    product_sku: it.product_sku,
                    product_skn: it.product_skn,
                    warehouse_id: it.warehouse_id,
                    buy_number: it.quantity,
                    last_price: decimal(&format!("items[{i}].unit_price"), &it.unit_price)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        remark: o.remark.to_owned(),
        // The storefront's checkout takes payment through the gateway only (for now).
        payment_channel: c::PaymentChannel::Gateway,
    };
    Outbox::new().send(conn, &submit).await?;
    let detail = json!({
        "parent_order_code": o.parent,
        "split_parent": o.is_split_parent,
        "order_amount": amount,
    });
    store::record(
        conn,
        store::Entry {
            order_code: o.code.get(),
            subject: Subject::Order.to_string(),
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

async fn create_order_tx(conn: &mut PgConnection, req: CreateOrder) -> Result<Reply, ApiError> {
    // Checked by the extractor already; planned again here for the parts (no panics either way).
    let plan = split::plan(&req).map_err(|(field, message)| ApiError::invalid(field, message))?;
    let code = OrderCode(store::next_order_code(conn).await?);
    insert_order(
        conn,
        &NewOrder {
            code,
            uid: req.uid,
            parent: None,
            is_split_parent: !plan.children.is_empty(),
            part: &plan.parent,
            address: &req.delivery_address,
            remark: &req.remark,
        },
    )
    .await?;
    let mut children = Vec::with_capacity(plan.children.len());
    for part in &plan.children {
        let child = OrderCode(store::next_order_code(conn).await?);
        insert_order(
            conn,
            &NewOrder {
                code: child,
                uid: req.uid,
                parent: Some(code),
                is_split_parent: false,
                part,
                address: &req.delivery_address,
                remark: &req.remark,
            },
        )
        .await?;
        children.push(child);
    }
    m::order_created(!children.is_empty(), children.len());
    reply(
        StatusCode::CREATED,
        &Created {
            order_code: code,
            status: OrderState::PendingPayment.as_str().into(),
            child_order_codes: children,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// GET /orders/{order_code}, GET /orders
// ---------------------------------------------------------------------------------------------

/// An order with its status, items, shipments, invoice, exchanges, returns and timeline.
#[utoipa::path(
    get, path = "/orders/{order_code}", tag = "orders",
    params(("order_code" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody))
)]
pub async fn get_order(
    State(app): State<App>,
    IdPath(code): IdPath<OrderCode>,
) -> Result<Json<OrderView>, ApiError> {
    let mut conn = app.pool.acquire().await?;
    read_model::load_view(&mut conn, code)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("order {code}")))
}

/// Orders of a customer, newest first, optionally by status.
#[utoipa::path(
    get, path = "/orders", tag = "orders",
    params(
        ("uid" = i64, Query, description = "The customer"),
        ("status" = Option<OrderState>, Query, description = "A state name, e.g. `shipped`"),
        ("limit" = Option<i64>, Query, description = "1..=200, default 50"),
    ),
    responses((status = 200, body = Vec<OrderSummary>))
)]
pub async fn list_orders(
    State(app): State<App>,
    ApiQuery(q): ApiQuery,
) -> Result<Json<Vec<OrderSummary>>, ApiError> {
    let uid = q
        .get("uid")
        .ok_or_else(|| ApiError::invalid("uid", "required"))?;
    let uid = positive("uid", uid)?;
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
    let mut conn = app.pool.acquire().await?;
    Ok(Json(read_model::list(&mut conn, uid, status, limit).await?))
}

// ---------------------------------------------------------------------------------------------
// Order actions
// ---------------------------------------------------------------------------------------------

fn status_reply(code: OrderCode, status: impl std::fmt::Display) -> Result<Reply, ApiError> {
    reply(
        StatusCode::OK,
        &StatusReply {
            order_code: code,
            status: status.to_string(),
        },
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
    IdPath(code): IdPath<OrderCode>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move {
            let order = must_order(conn, code).await?;
            let event = OrderEvent::ReceiptConfirmed;
            let check = order_step(order.status, event);
            if !matches!(check, Outcome::Applied { .. }) {
                return Err(refused(check, "confirm receipt").on(
                    code,
                    Subject::Order,
                    event.as_str(),
                ));
            }
            let out =
                store::offer_order_event(conn, &order, event, &Source::http(), json!({})).await?;
            Outbox::new()
                .send(
                    conn,
                    &c::OrderStatus {
                        order_code: code.get(),
                        status: c::StorefrontOrderStatus::ReceiptConfirmed,
                    },
                )
                .await?;
            status_reply(code, out.state())
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
    IdPath(code): IdPath<OrderCode>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let remark = body.value.remark.clone();
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move {
            let event = OrderEvent::UserCancel;
            let order = must_order(conn, code).await?;
            let check = order_step(order.status, event);
            if !matches!(check, Outcome::Applied { .. }) {
                return Err(refused(check, "cancel").on(code, Subject::Order, event.as_str()));
            }
            let children = if order.is_split_parent {
                store::orders_lock::lock_children(conn, code).await?
            } else {
                Vec::new()
            };
            // Children already cancelled (e.g. by customer service) are left as they are.
            let mut targets = vec![order];
            for child in children {
                match order_step(child.status, event) {
                    Outcome::Applied { .. } => targets.push(child),
                    Outcome::NotApplied { current, .. }
                        if current.is_terminal() && current != OrderState::ReceiptConfirmed => {}
                    other => {
                        return Err(refused(
                            other,
                            &format!("cancel child order {}", child.order_code),
                        )
                        .on(code, Subject::Order, event.as_str()))
                    }
                }
            }
            let detail = json!({ "remark": remark });
            let mut status = OrderState::CancelledByUser;
            for t in &targets {
                let out = store::offer_order_event(conn, t, event, &Source::http(), detail.clone())
                    .await?;
                if t.order_code == code.get() {
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
            status_reply(code, status)
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
    responses((status = 200, body = StatusReply), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Already shipped / closed"))
)]
pub async fn change_address(
    State(app): State<App>,
    IdPath(code): IdPath<OrderCode>,
    headers: HeaderMap,
    body: ApiJson<ChangeAddress>,
) -> Result<Response, ApiError> {
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
                targets.extend(store::orders_lock::lock_children(conn, code).await?);
            }
            for t in &targets {
                if !t.status.address_changeable() {
                    return Err(ApiError::conflict(
                        t.status,
                        format!("order {} can no longer change its address", t.order_code),
                    )
                    .on(
                        OrderCode(t.order_code),
                        Subject::Order,
                        "address_changed",
                    ));
                }
            }
            let new = value.delivery_address;
            let stored = to_json(&new)?;
            let mut wire = Vec::new();
            for t in &targets {
                store::orders::update_address(conn, OrderCode(t.order_code), &stored).await?;
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
            status_reply(code, order.status)
        })
    })
    .await
}
