//! Exchange orders: `POST /orders/{order_code}/exchanges`, the customer's waybill, the
//! customer's cancel.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use orderbus_bus::Outbox;
use orderbus_contracts as c;
use serde_json::json;
use sqlx::PgConnection;

use super::after_sales::{after_sale_order, cancellable, line, send_cancel, waybill_note};
use super::error::{to_json, ApiError, ErrorBody, Subject};
use super::extract::{ApiJson, IdPath};
use super::idempotency::{self, Reply};
use super::support::{decimal, reply};
use super::types::{ActionBody, CreateExchange, ExchangeReply, Waybill};
use super::App;
use crate::ids::{ExchangeId, OrderCode};
use crate::machine::{exchange_step, ExchangeEvent, ExchangeState};
use crate::store::after_sales::{NewExchangeRow, WaybillRow};
use crate::store::{self, ExchangeHead, Source};

pub fn router() -> Router<App> {
    Router::new()
        .route("/orders/{order_code}/exchanges", post(create_exchange))
        .route("/exchanges/{id}/waybill", post(exchange_waybill))
        .route("/exchanges/{id}/cancel", post(cancel_exchange))
}

fn exchange_reply(
    status: StatusCode,
    id: ExchangeId,
    order_code: OrderCode,
    state: impl std::fmt::Display,
) -> Result<Reply, ApiError> {
    reply(
        status,
        &ExchangeReply {
            id,
            order_code,
            status: state.to_string(),
        },
    )
}

async fn must_exchange(conn: &mut PgConnection, id: ExchangeId) -> Result<ExchangeHead, ApiError> {
    store::orders_lock::lock_exchange(conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("exchange {id}")))
}

/// Create an exchange (→ `order.createChangeOrder`). Allowed on delivered orders.
#[utoipa::path(
    post, path = "/orders/{order_code}/exchanges", tag = "after-sale",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateExchange,
    responses((status = 201, body = ExchangeReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn create_exchange(
    State(app): State<App>,
    IdPath(code): IdPath<OrderCode>,
    headers: HeaderMap,
    body: ApiJson<CreateExchange>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: req,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(create_exchange_tx(conn, code, req))
    })
    .await
}

async fn create_exchange_tx(
    conn: &mut PgConnection,
    code: OrderCode,
    req: CreateExchange,
) -> Result<Reply, ApiError> {
    let order = after_sale_order(conn, code, "exchange_requested").await?;
    let lines = store::orders::lines_by_sku(conn, code).await?;
    let mut goods = Vec::with_capacity(req.goods.len());
    for (i, g) in req.goods.iter().enumerate() {
        let l = line(&lines, code, i, g.product_sku)?;
        goods.push(c::ChangeGoods {
            exchange_reason: g.exchange_reason.clone(),
            goods_type: g.goods_type.clone(),
            last_price: decimal("last_price", &l.last_price)?,
            new_goods_id: g.new_goods_id,
            new_product_skc: g.new_product_skc,
            new_product_sku: g.new_product_sku,
            product_skc: g.product_skc,
            product_skn: l.product_skn,
            product_sku: g.product_sku,
            remark: g.remark.clone(),
        });
    }
    let addr = req.address.clone().unwrap_or_else(|| order.address.clone());
    let id = ExchangeId(store::next_after_sale_id(conn).await?);
    let msg = c::CreateChangeOrder {
        id: id.get(),
        city: addr.city.clone(),
        area_code: addr.area_code.clone(),
        address: addr.address.clone(),
        consignee_name: addr.user_name.clone(),
        county: addr.district.clone(),
        delivery_tpye: req.delivery_type,
        email: addr.email.clone(),
        exchange_mode: req.exchange_mode,
        mobile: addr.mobile.clone(),
        order_code: code.get(),
        // The chain's first order: for a replacement order, the order it replaced.
        init_order_code: code.get(),
        source_order_code: code.get(),
        province: addr.province.clone(),
        receipt_time: req.receipt_time.clone(),
        remark: req.remark.clone(),
        uid: order.uid,
        zip_code: addr.zip_code.clone(),
        goods,
    };
    store::after_sales::insert_exchange(
        conn,
        &NewExchangeRow {
            id,
            order_code: code,
            uid: order.uid,
            delivery_type: req.delivery_type,
            exchange_mode: req.exchange_mode,
            receipt_time: &req.receipt_time,
            remark: &req.remark,
            address: &to_json(&addr)?,
            goods: &to_json(&msg.goods)?,
        },
    )
    .await?;
    store::record(
        conn,
        store::Entry {
            order_code: code.get(),
            subject: Subject::Exchange(id).to_string(),
            source: &Source::http(),
            event: "created",
            applied: true,
            reason: None,
            before: None,
            after: Some(ExchangeState::Requested.as_str()),
            detail: json!({ "goods": msg.goods.len() }),
        },
    )
    .await?;
    Outbox::new().send(conn, &msg).await?;
    exchange_reply(StatusCode::CREATED, id, code, ExchangeState::Requested)
}

/// The customer's waybill for the goods sent back (→ `order.updateChangeRefundOrderExpressInfo`,
/// `type: change`). Allowed once the ERP approved the exchange.
#[utoipa::path(
    post, path = "/exchanges/{id}/waybill", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = Waybill,
    responses((status = 200, body = ExchangeReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn exchange_waybill(
    State(app): State<App>,
    IdPath(id): IdPath<ExchangeId>,
    headers: HeaderMap,
    body: ApiJson<Waybill>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: w,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(async move {
            let x = must_exchange(conn, id).await?;
            let order_code = OrderCode(x.order_code);
            let (Some(erp_id), ExchangeState::Approved) = (x.erp_exchange_id, x.status) else {
                return Err(ApiError::conflict(
                    x.status,
                    "a waybill is accepted once the ERP has approved the exchange",
                )
                .on(order_code, Subject::Exchange(id), "customer_waybill"));
            };
            let row = WaybillRow {
                express_id: w.express_id,
                express_name: &w.express_name,
                express_number: &w.express_number,
            };
            store::after_sales::set_exchange_waybill(conn, id, &row).await?;
            waybill_note(
                conn,
                order_code,
                Subject::Exchange(id),
                x.status.as_str(),
                &w,
            )
            .await?;
            let msg = c::AfterSaleExpressInfo::Change(c::ChangeExpressInfo {
                id: id.get(),
                uid: x.uid,
                apply_id: erp_id,
                express_number: w.express_number.clone(),
                express_name: w.express_name.clone(),
                express_id: w.express_id,
            });
            Outbox::new().send(conn, &msg).await?;
            exchange_reply(StatusCode::OK, id, order_code, x.status)
        })
    })
    .await
}

/// Cancel an exchange (→ `order.changeRefundCancel`, type 2). Needs the ERP's id (after its
/// `erp.createChangeOrder`) and a state before the goods are back.
#[utoipa::path(
    post, path = "/exchanges/{id}/cancel", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionBody,
    responses((status = 200, body = ExchangeReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn cancel_exchange(
    State(app): State<App>,
    IdPath(id): IdPath<ExchangeId>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move {
            let x = must_exchange(conn, id).await?;
            let order_code = OrderCode(x.order_code);
            let event = ExchangeEvent::UserCancel;
            let erp_id = cancellable(
                exchange_step(x.status, event),
                x.status,
                x.erp_exchange_id,
                order_code,
                Subject::Exchange(id),
                event.as_str(),
            )?;
            let out =
                store::offer_exchange_event(conn, &x, event, &Source::http(), json!({})).await?;
            send_cancel(conn, erp_id, c::AfterSaleKind::Change).await?;
            exchange_reply(StatusCode::OK, id, order_code, out.state())
        })
    })
    .await
}
