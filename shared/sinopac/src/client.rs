//! Typed QPay client: Nonce, then a signed/encrypted `POST {base}/Order`, reply decrypted and
//! its Sign verified before anything in it is believed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::crypto::HashId;
use crate::envelope::{self, ApiService};
use crate::error::{Error, ProtocolError, TransportError};
use crate::types::{
    trunc_minute, DateField, DateWindow, OrderCreateRequest, OrderCreateResponse,
    OrderPayQueryResponse, OrderPayQueryWire, OrderQuery, OrderQueryResponse, OrderRecord,
    PaymentMethod,
};

/// At most this many rows come back from one OrderQuery (the bank's documented cap).
pub const ORDER_QUERY_ROW_CAP: usize = 300;

/// Business code the simulator uses when asked for more than the cap in
/// `OverCapBehaviour::Fail` mode; the real bank's behaviour is \[unknown\] (it may truncate).
pub const ROW_LIMIT_CODE: &str = "E0107";

/// Connection settings of one shop.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api` (no trailing `/Order`).
    pub base_url: String,
    pub shop_no: String,
    pub hash_id: HashId,
    /// Sent as `X-KeyID` on both calls when set (required by the bank since 2023-04).
    pub key_id: Option<String>,
    pub connect_timeout: Duration,
    /// Longest wait for any read on the socket.
    pub read_timeout: Duration,
    /// Replies larger than this are refused (protects memory against a broken peer).
    pub max_body_bytes: usize,
}

impl ClientConfig {
    /// Settings with default timeouts (connect 5 s, read 30 s) and no X-KeyID.
    pub fn new(base_url: impl Into<String>, shop_no: impl Into<String>, hash_id: HashId) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            shop_no: shop_no.into(),
            hash_id,
            key_id: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }

    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }
}

/// A QPay client for one shop. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    cfg: Arc<ClientConfig>,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .build()
            .map_err(|e| Error::Transport(TransportError::Other(e)))?;
        Ok(Client {
            http,
            cfg: Arc::new(cfg),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    async fn post_json(&self, route: &str, body: &impl Serialize) -> Result<Vec<u8>, Error> {
        let url = format!("{}/{}", self.cfg.base_url.trim_end_matches('/'), route);
        let mut req = self.http.post(url).json(body);
        if let Some(k) = &self.cfg.key_id {
            req = req.header("X-KeyID", k);
        }
        let mut resp = req.send().await.map_err(TransportError::from)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(TransportError::ServerStatus(status.as_u16()).into());
        }
        if status != reqwest::StatusCode::OK {
            return Err(ProtocolError::HttpStatus(status.as_u16()).into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(TransportError::from)? {
            if body.len() + chunk.len() > self.cfg.max_body_bytes {
                return Err(ProtocolError::BodyTooLarge(self.cfg.max_body_bytes).into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// `POST {base}/Nonce`: a fresh one-time nonce.
    pub async fn nonce(&self) -> Result<String, Error> {
        let body = self
            .post_json("Nonce", &serde_json::json!({ "ShopNo": self.cfg.shop_no }))
            .await?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
        match v.get("Nonce").and_then(Value::as_str) {
            Some(n) if !n.trim().is_empty() => Ok(n.to_owned()),
            // A plain `{"Status":"F","Description":…}` refusal (e.g. unknown shop, X-KeyID).
            _ => match v.get("Status").and_then(Value::as_str) {
                Some(s) if s != "S" => Err(Error::business(
                    v.get("Description").and_then(Value::as_str).unwrap_or(""),
                )),
                _ => Err(ProtocolError::MissingField("Nonce").into()),
            },
        }
    }

    /// One service call with an arbitrary message: returns the verified reply message after
    /// checking `Status` = `S`.
    pub async fn call(
        &self,
        service: ApiService,
        message: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        let nonce = self.nonce().await?;
        let env = envelope::seal(
            service,
            &self.cfg.shop_no,
            &self.cfg.hash_id,
            &nonce,
            message,
        );
        let body = self.post_json("Order", &env).await?;
        let reply = envelope::decode_response(&body, &self.cfg.hash_id, service)?;
        envelope::check_status(&reply)?;
        Ok(reply)
    }

    /// OrderCreate. The reply's `OrderNo` must echo the request's.
    pub async fn order_create(
        &self,
        req: &OrderCreateRequest,
    ) -> Result<OrderCreateResponse, Error> {
        validate_create(req)?;
        let msg = to_map(&req.to_wire(&self.cfg.shop_no))?;
        let resp: OrderCreateResponse = typed(self.call(ApiService::OrderCreate, &msg).await?)?;
        if resp.order_no != req.order_no {
            return Err(ProtocolError::BadMessage(format!(
                "reply is for order {:?}, not {:?}",
                resp.order_no, req.order_no
            ))
            .into());
        }
        Ok(resp)
    }

    /// OrderPayQuery: the payment result behind a notification's PayToken.
    pub async fn order_pay_query(&self, pay_token: &str) -> Result<OrderPayQueryResponse, Error> {
        let token = pay_token.trim();
        if token.is_empty() || token.len() > 100 {
            return Err(Error::InvalidRequest(
                "PayToken must be 1-100 characters".to_owned(),
            ));
        }
        let msg = to_map(&OrderPayQueryWire {
            shop_no: self.cfg.shop_no.clone(),
            pay_token: token.to_owned(),
        })?;
        typed(self.call(ApiService::OrderPayQuery, &msg).await?)
    }

    /// OrderQuery with at least one condition. At most [`ORDER_QUERY_ROW_CAP`] rows come back;
    /// use [`Client::order_query_window`] to page through a date range.
    pub async fn order_query(&self, q: &OrderQuery) -> Result<OrderQueryResponse, Error> {
        q.validate().map_err(Error::InvalidRequest)?;
        let msg = to_map(&q.to_wire(&self.cfg.shop_no))?;
        typed(self.call(ApiService::OrderQuery, &msg).await?)
    }

    /// All orders in `window` (inclusive, minute precision) on `field`, combined with the other
    /// conditions of `filter`. A window whose reply reaches the row cap (or is refused with
    /// [`ROW_LIMIT_CODE`]) is halved until every reply is under the cap. Rows are returned in
    /// window order, deduplicated by (OrderNo, TSNo).
    pub async fn order_query_window(
        &self,
        field: DateField,
        window: DateWindow,
        filter: &OrderQuery,
    ) -> Result<Vec<OrderRecord>, Error> {
        let window = DateWindow {
            start: trunc_minute(window.start),
            end: trunc_minute(window.end),
        };
        if window.start > window.end {
            return Err(Error::InvalidRequest(
                "window start is after its end".to_owned(),
            ));
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // Explicit stack instead of async recursion; left halves are popped first.
        let mut stack = vec![window];
        while let Some(w) = stack.pop() {
            let mut q = filter.clone();
            match field {
                DateField::Order => q.order_date = Some(w),
                DateField::Pay => q.pay_date = Some(w),
            }
            let over_cap = match self.order_query(&q).await {
                Ok(resp) if resp.order_list.len() < ORDER_QUERY_ROW_CAP => {
                    for r in resp.order_list {
                        if seen.insert((r.order_no.clone(), r.ts_no.clone())) {
                            out.push(r);
                        }
                    }
                    false
                }
                Ok(_) => true,
                Err(Error::Business { code, .. }) if code == ROW_LIMIT_CODE => true,
                Err(e) => return Err(e),
            };
            if over_cap {
                let (left, right) = split_window(w).ok_or(Error::WindowTooDense {
                    start: w.start,
                    cap: ORDER_QUERY_ROW_CAP,
                })?;
                stack.push(right);
                stack.push(left);
            }
        }
        Ok(out)
    }
}

/// Halves an inclusive minute window: `[s, mid]` and `[mid + 1 min, e]`; `None` for one minute.
pub fn split_window(w: DateWindow) -> Option<(DateWindow, DateWindow)> {
    let minutes = (w.end - w.start).num_minutes();
    if minutes < 1 {
        return None;
    }
    let mid = w.start + chrono::Duration::minutes(minutes / 2);
    Some((
        DateWindow {
            start: w.start,
            end: mid,
        },
        DateWindow {
            start: mid + chrono::Duration::minutes(1),
            end: w.end,
        },
    ))
}

fn to_map(v: &impl Serialize) -> Result<Map<String, Value>, Error> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::InvalidRequest(
            "message is not a JSON object".to_owned(),
        )),
    }
}

fn typed<T: DeserializeOwned>(m: Map<String, Value>) -> Result<T, Error> {
    serde_json::from_value(Value::Object(m))
        .map_err(|e| ProtocolError::BadMessage(e.to_string()).into())
}

fn validate_create(r: &OrderCreateRequest) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::InvalidRequest(m.to_owned()));
    let n = r.order_no.chars().count();
    if n == 0 || n > 50 || r.order_no.contains(['\'', '"', '%']) {
        return bad("OrderNo must be 1-50 characters without ' \" %");
    }
    if r.amount.wire_value() == 0 {
        return bad("Amount must be positive");
    }
    if r.prdt_name.trim().is_empty() || r.prdt_name.chars().count() > 60 {
        return bad("PrdtName must be 1-60 characters");
    }
    if r.memo.as_ref().is_some_and(|m| m.chars().count() > 30) {
        return bad("Memo is at most 30 characters");
    }
    for p in [
        &r.param1,
        &r.param2,
        &r.param3,
        &r.return_url,
        &r.backend_url,
    ]
    .into_iter()
    .flatten()
    {
        if p.chars().count() > 255 {
            return bad("Param1..3/ReturnURL/BackendURL are at most 255 characters");
        }
    }
    if let PaymentMethod::Card(c) = &r.method {
        if !c.auto_billing && !c.exp_billing_days.is_some_and(|d| (1..=7).contains(&d)) {
            return bad("ExpBillingDays (1-7) is required when AutoBilling is N");
        }
        if c.exp_minutes.is_some_and(|m| !(1..=30).contains(&m)) {
            return bad("ExpMinutes must be 1-30");
        }
    }
    Ok(())
}
