//! BackendURL (`POST /sinopac/backend`) and ReturnURL (`POST /sinopac/return`), both through
//! the shared webhook ingress: every request is logged, an identical resend is answered from
//! the dedupe row, and the effect runs in the ingress's transaction.
//!
//! The notification carries no signature, so it is only a hint: the effect asks the bank
//! (`OrderPayQuery` with the PayToken) and settles what the bank's decrypted, Sign-checked
//! answer says. A forged token gets the bank's "unknown token" and nothing else.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::Utc;
use orderbus_ingress::{
    effect_fn, Applied, EffectError, Inbound, Ingress, IngressConfig, Rejection, Replies, Reply,
    ReplyContext, ReplyError, SinopacReplies, Unsigned, Webhook,
};
use orderbus_sinopac::{decode_notification, Error as BankError};
use sqlx::{PgConnection, PgPool};

use crate::bank::Bank;
use crate::metrics as m;
use crate::settle::{settle, Settled, Via};
use crate::store;

/// Path of the BackendURL route.
pub const BACKEND_PATH: &str = "/sinopac/backend";
/// Path of the ReturnURL route.
pub const RETURN_PATH: &str = "/sinopac/return";

/// The two notification routes.
pub fn router(
    pool: PgPool,
    bank: Bank,
    return_redirect: String,
    config: IngressConfig,
) -> axum::Router {
    let bank = Arc::new(bank);
    let backend_bank = bank.clone();
    let return_bank = bank;
    Ingress::new(pool, config)
        .webhook(Webhook::new(
            "sinopac",
            BACKEND_PATH,
            Unsigned,
            SinopacReplies,
            effect_fn(move |tx, request| {
                let bank = backend_bank.clone();
                Box::pin(async move { apply(&bank, Via::BackendUrl, tx, request).await })
            }),
        ))
        .webhook(Webhook::new(
            "sinopac-return",
            RETURN_PATH,
            Unsigned,
            RedirectReplies {
                location: return_redirect,
            },
            effect_fn(move |tx, request| {
                let bank = return_bank.clone();
                Box::pin(async move { apply(&bank, Via::ReturnUrl, tx, request).await })
            }),
        ))
        .router()
}

async fn apply(
    bank: &Bank,
    via: Via,
    tx: &mut PgConnection,
    request: &Inbound,
) -> Result<Applied, EffectError> {
    let note = decode_notification(request.request.content_type().as_deref(), request.body())
        .map_err(EffectError::bad_body)?;
    if note.shop_no != bank.shop_no() {
        tracing::warn!(via = via.as_str(), shop_no = %note.shop_no, "notification for another shop: ignored");
        m::notification_ignored(via.as_str(), "foreign_shop");
        return Ok(Applied::refused("foreign_shop", "not our ShopNo"));
    }
    let token = note.pay_token.trim().to_owned();
    let answer = match bank.pay_query(&token).await {
        Ok(answer) => answer,
        Err(BankError::Business { code, message }) => {
            // The bank does not know the token (forged, or another shop's): nothing is paid.
            tracing::warn!(via = via.as_str(), bank_code = %code, bank_message = %message, "OrderPayQuery refused the PayToken: not paid");
            m::notification_ignored(via.as_str(), "unknown_token");
            store::record_token(tx, &token, via.as_str(), None, "refused_by_bank").await?;
            return Ok(Applied::refused(
                "unknown_token",
                format!("{code} {message}"),
            ));
        }
        Err(BankError::InvalidRequest(message)) => {
            m::notification_ignored(via.as_str(), "invalid_token");
            return Err(EffectError::bad_request(message));
        }
        Err(e) => {
            // Transport trouble, a bad Sign, garbage: we cannot know, so the bank must retry
            // (503). The sweep covers us if the retries run out.
            tracing::warn!(via = via.as_str(), error = %e, transient = e.is_transient(), "OrderPayQuery failed: not paid, asking the bank to retry");
            m::notification_ignored(via.as_str(), "bank_error");
            return Err(EffectError::retry(e));
        }
    };
    let Some(payment) = answer else {
        tracing::warn!(
            via = via.as_str(),
            "OrderPayQuery answered without a result for our shop: not paid"
        );
        m::notification_ignored(via.as_str(), "no_result");
        store::record_token(tx, &token, via.as_str(), None, "no_result").await?;
        return Ok(Applied::refused(
            "no_result",
            "the bank reports no payment result",
        ));
    };
    let settled = settle(tx, via, &payment, Utc::now())
        .await
        .map_err(EffectError::retry)?;
    let result = match &settled {
        Settled::Recorded { outcome, .. } => *outcome,
        Settled::AlreadySettled { .. } => {
            m::notification_ignored(via.as_str(), "already_settled");
            "already_settled"
        }
        Settled::UnknownOrderNo => {
            tracing::warn!(via = via.as_str(), order_no = %payment.order_no, "verified payment for an OrderNo that is not ours: ignored");
            m::notification_ignored(via.as_str(), "unknown_order_no");
            "unknown_order_no"
        }
    };
    store::record_token(tx, &token, via.as_str(), settled.order_code(), result).await?;
    let applied = Applied::accepted();
    Ok(match settled.order_code() {
        Some(code) => applied.for_order(code.to_string()),
        None => applied,
    })
}

/// ReturnURL replies: the customer's browser is sent on to the storefront's result page
/// (303), whatever happened; the BackendURL push and the sweep settle what this one could not.
pub struct RedirectReplies {
    pub location: String,
}

impl RedirectReplies {
    fn redirect(&self) -> Reply {
        Reply {
            status: StatusCode::SEE_OTHER,
            headers: vec![
                ("location".into(), self.location.clone()),
                ("content-type".into(), "text/plain; charset=utf-8".into()),
            ],
            body: Bytes::from_static(b"see the storefront"),
        }
    }
}

impl Replies for RedirectReplies {
    fn accepted(&self, _ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Ok(self.redirect())
    }

    fn refused(
        &self,
        _code: &str,
        _message: &str,
        _ctx: &ReplyContext,
    ) -> Result<Reply, ReplyError> {
        Ok(self.redirect())
    }

    fn rejected(&self, _rejection: &Rejection, _ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Ok(self.redirect())
    }
}
