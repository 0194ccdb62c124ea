//! Return orders: `POST /orders/{order_code}/returns`, the customer's waybill, the customer's
//! cancel.

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
use super::types::{ActionBody, CreateReturn, ReturnReply, Waybill};
use super::App;
use crate::ids::{OrderCode, ReturnId};
use crate::machine::{return_step, ReturnEvent, ReturnState};
use crate::store::after_sales::{NewReturnRow, WaybillRow};
use crate::store::{self, ReturnHead, Source};

pub fn router() -> Router<App> {
    Router::new()
        .route("/orders/{order_code}/returns", post(create_return))
        .route("/returns/{id}/waybill", post(return_waybill))
        .route("/returns/{id}/cancel", post(cancel_return))
}

fn return_reply(
    status: StatusCode,
    id: ReturnId,
    order_code: OrderCode,
    state: impl std::fmt::Display,
) -> Result<Reply, ApiError> {
    reply(
        status,
        &ReturnReply {
            id,
            order_code,
            status: state.to_string(),
        },
    )
}

async fn must_return(conn: &mut PgConnection, id: ReturnId) -> Result<ReturnHead, ApiError> {
    store::orders_lock::lock_return(conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("return {id}")))
}

/// Create a return (→ `order.createRefundOrder`). Allowed on delivered orders.
#[utoipa::path(
    post, path = "/orders/{order_code}/returns", tag = "after-sale",
    params(("order_code" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateReturn,
    responses((status = 201, body = ReturnReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn create_return(
    State(app): State<App>,
    IdPath(code): IdPath<OrderCode>,
    headers: HeaderMap,
    body: ApiJson<CreateReturn>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let ApiJson {
        value: req,
        request_hash,
    } = body;
    idempotency::run(&app.pool, key, &request_hash, move |conn| {
        Box::pin(create_return_tx(conn, code, req))
    })
    .await
}

async fn create_return_tx(
    conn: &mut PgConnection,
    code: OrderCode,
    req: CreateReturn,
) -> Result<Reply, ApiError> {
    let order = after_sale_order(conn, code, "return_requested").await?;
    let lines = store::orders::lines_by_sku(conn, code).await?;
    let mut goods = Vec::with_capacity(req.goods.len());
    for (i, g) in req.goods.iter().enumerate() {
        let l = line(&lines, code, i, g.product_sku)?;
        goods.push(c::ReturnedGoods {
            product_sku: g.product_sku,
            goods_type: g.goods_type.clone(),
            last_price: decimal("last_price", &l.last_price)?,
            returned_reason: g.returned_reason.clone(),
            remark: g.remark.clone(),
            evidence_images: g.evidence_images.clone(),
        });
    }
    let id = ReturnId(store::next_after_sale_id(conn).await?);
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
        order_code: code.get(),
        payee_name: req.payee_name.clone(),
        province: req.province.clone(),
        remark: req.remark.clone(),
        return_amount_mode: req.return_amount_mode.clone(),
        order_returned_id: id.get(),
        returned_goods_list: goods,
    };
    store::after_sales::insert_return(
        conn,
        &NewReturnRow {
            id,
            order_code: code,
            uid: order.uid,
            return_amount_mode: &req.return_amount_mode,
            payee_name: &req.payee_name,
            bank_id: &req.bank_id,
            bank_name: &req.bank_name,
            head_bank_name: &req.head_bank_name,
            bank_card: &req.bank_card,
            alipay_account: &req.alipay_account,
            alipay_name: &req.alipay_name,
            area_code: &req.area_code,
            province: &req.province,
            city: &req.city,
            county: &req.county,
            remark: &req.remark,
            goods: &to_json(&msg.returned_goods_list)?,
        },
    )
    .await?;
    store::record(
        conn,
        store::Entry {
            order_code: code.get(),
            subject: Subject::Return(id).to_string(),
            source: &Source::http(),
            event: "created",
            applied: true,
            reason: None,
            before: None,
            after: Some(ReturnState::Submitted.as_str()),
            detail: json!({ "goods": msg.returned_goods_list.len() }),
        },
    )
    .await?;
    Outbox::new().send(conn, &msg).await?;
    return_reply(StatusCode::CREATED, id, code, ReturnState::Submitted)
}

/// The customer's waybill for a return (→ `order.updateChangeRefundOrderExpressInfo`,
/// `type: refund`). Allowed once the ERP approved the return.
#[utoipa::path(
    post, path = "/returns/{id}/waybill", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = Waybill,
    responses((status = 200, body = ReturnReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn return_waybill(
    State(app): State<App>,
    IdPath(id): IdPath<ReturnId>,
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
            let r = must_return(conn, id).await?;
            let order_code = OrderCode(r.order_code);
            let (Some(erp_id), ReturnState::Approved) = (r.erp_returned_id, r.status) else {
                return Err(ApiError::conflict(
                    r.status,
                    "a waybill is accepted once the ERP has approved the return",
                )
                .on(order_code, Subject::Return(id), "customer_waybill"));
            };
            let row = WaybillRow {
                express_id: w.express_id,
                express_name: &w.express_name,
                express_number: &w.express_number,
            };
            store::after_sales::set_return_waybill(conn, id, &row).await?;
            waybill_note(conn, order_code, Subject::Return(id), r.status.as_str(), &w).await?;
            let msg = c::AfterSaleExpressInfo::Refund(c::RefundExpressInfo {
                order_returned_id: id.get(),
                uid: r.uid,
                apply_id: erp_id,
                express_number: w.express_number.clone(),
                express_name: w.express_name.clone(),
                express_id: w.express_id,
            });
            Outbox::new().send(conn, &msg).await?;
            return_reply(StatusCode::OK, id, order_code, r.status)
        })
    })
    .await
}

/// Cancel a return (→ `order.changeRefundCancel`, type 1). Needs the ERP's id and a state
/// before the goods are sent back.
#[utoipa::path(
    post, path = "/returns/{id}/cancel", tag = "after-sale",
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionBody,
    responses((status = 200, body = ReturnReply), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn cancel_return(
    State(app): State<App>,
    IdPath(id): IdPath<ReturnId>,
    headers: HeaderMap,
    body: ApiJson<ActionBody>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    idempotency::run(&app.pool, key, &body.request_hash, move |conn| {
        Box::pin(async move {
            let r = must_return(conn, id).await?;
            let order_code = OrderCode(r.order_code);
            let event = ReturnEvent::UserCancel;
            let erp_id = cancellable(
                return_step(r.status, event),
                r.status,
                r.erp_returned_id,
                order_code,
                Subject::Return(id),
                event.as_str(),
            )?;
            let out =
                store::offer_return_event(conn, &r, event, &Source::http(), json!({})).await?;
            send_cancel(conn, erp_id, c::AfterSaleKind::Refund).await?;
            return_reply(StatusCode::OK, id, order_code, out.state())
        })
    })
    .await
}
