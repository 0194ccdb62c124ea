//! Response-side model and decoders. Decoders work on `serde_json::Value` and are lenient where
//! PHP is loose (numbers as strings, `[]` for an empty object, `icon` vs `logo`), strict where a
//! wrong guess would cost money (factor ids must be strings, `verify` must be 0/1).

use crate::model::{BuyType, FactorId, SendType};
use serde_json::Value;

/// The `{code, message, result}` envelope every method answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// 0 = success.
    pub code: i64,
    /// Human-readable (Persian) text; `""` on success.
    pub message: String,
    /// Method-specific payload.
    pub result: Value,
}

/// Why a body is not an envelope.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all (HTML error page, truncated body…).
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not `{code, message, result}`.
    #[error("JSON is not a Frotel envelope: {0}")]
    NotEnvelope(String),
}

/// Decode a body into an [`Envelope`]. Requires all three keys, like the official helper.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| EnvelopeError::NotEnvelope("not an object".into()))?;
    let code = obj
        .get("code")
        .ok_or_else(|| EnvelopeError::NotEnvelope("missing `code`".into()))?;
    let code = as_int(code)
        .ok_or_else(|| EnvelopeError::NotEnvelope("`code` is not an integer".into()))?;
    let message = match obj.get("message") {
        None => return Err(EnvelopeError::NotEnvelope("missing `message`".into())),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    let result = obj
        .get("result")
        .cloned()
        .ok_or_else(|| EnvelopeError::NotEnvelope("missing `result`".into()))?;
    Ok(Envelope {
        code,
        message,
        result,
    })
}

/// One quoted combination of `getPrices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Payment method (`naghdi` → online cash, `posti` → COD).
    pub buy_type: BuyType,
    /// Shipping method.
    pub send_type: SendType,
    /// Postage in Rial.
    pub post: i64,
    /// Tax on postage in Rial.
    pub tax: i64,
    /// Frotel's service fee in Rial.
    pub frotel_service: i64,
    /// Optional packing fee some deployments return (0 when absent; not part of
    /// [`Quote::shown_price`], the WooCommerce plugin adds it separately).
    pub packing: i64,
}

impl Quote {
    /// The price to show the buyer: `post + tax + frotel_service`.
    pub fn shown_price(&self) -> i64 {
        self.post
            .saturating_add(self.tax)
            .saturating_add(self.frotel_service)
    }
}

/// `getPrices` result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prices {
    /// Every quoted combination, `naghdi` first, send types ascending.
    pub quotes: Vec<Quote>,
}

impl Prices {
    /// The quote for one combination.
    pub fn get(&self, buy_type: BuyType, send_type: SendType) -> Option<&Quote> {
        self.quotes
            .iter()
            .find(|q| q.buy_type == buy_type && q.send_type == send_type)
    }
}

/// A bank gateway offered for online payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bank {
    /// Gateway id, passed to `pay` / `continuePay`.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Logo URL (`icon` in registerOrder, `logo` in orderPay).
    pub icon: Option<String>,
}

/// One line of a registered factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorItem {
    /// Product name.
    pub name: String,
    /// Quantity.
    pub num: i64,
    /// Unit price.
    pub price: i64,
    /// Product code.
    pub pro_code: String,
    /// Unit weight (g).
    pub weight: i64,
    /// Chosen option text.
    pub option: String,
}

/// `registerOrder*` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredOrder {
    /// The factor id (store it: every later call needs it).
    pub factor: FactorId,
    /// Factor as HTML.
    pub view: String,
    /// Order total in Rial.
    pub total: i64,
    /// Gateways to offer; empty for COD, or when the seller arranges payment later.
    pub banks: Vec<Bank>,
    /// Lines.
    pub items: Vec<FactorItem>,
}

/// `pay` / `continuePay` result: an HTML form that sends the buyer to the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentForm {
    /// The form, to be printed into the buyer's page as is.
    pub html: String,
}

impl PaymentForm {
    /// The form's `action` URL, if any (useful to redirect instead of rendering).
    pub fn action_url(&self) -> Option<String> {
        let start = self.html.find("<form")?;
        attr(&self.html[start..], "action")
    }

    /// `method` of the form (`post` when absent).
    pub fn method(&self) -> String {
        self.html
            .find("<form")
            .and_then(|s| attr(&self.html[s..], "method"))
            .unwrap_or_else(|| "post".into())
            .to_ascii_lowercase()
    }

    /// `name`/`value` pairs of the form's `<input>` elements that have a name.
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = self.html.as_str();
        while let Some(pos) = rest.find("<input") {
            let tag_end = rest[pos..].find('>').map_or(rest.len(), |e| pos + e);
            let tag = &rest[pos..tag_end];
            if let Some(name) = attr(tag, "name") {
                out.push((name, attr(tag, "value").unwrap_or_default()));
            }
            rest = &rest[tag_end..];
        }
        out
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let end = tag.find('>').unwrap_or(tag.len());
    let tag = &tag[..end];
    for quote in ['"', '\''] {
        let needle = format!("{name}={quote}");
        if let Some(p) = tag.find(&needle) {
            let v = &tag[p + needle.len()..];
            let close = v.find(quote)?;
            return Some(v[..close].replace("&amp;", "&"));
        }
    }
    None
}

/// The two parameters the bank appends to the shop's callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackParams {
    /// `_i` — payment id (`paymentId` of checkPay).
    pub payment_id: String,
    /// `sb` — bank reference (`ref` of checkPay).
    pub reference: String,
}

impl CallbackParams {
    /// Parse a callback query string (with or without the leading `?`).
    pub fn from_query(query: &str) -> Result<Self, crate::Error> {
        let q = query.strip_prefix('?').unwrap_or(query);
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
            .map_err(|e| crate::Error::validation("callback", e.to_string()))?;
        let get = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let payment_id = get("_i").ok_or_else(|| crate::Error::validation("_i", "missing"))?;
        if payment_id.is_empty() || !payment_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(crate::Error::validation("_i", "not an integer payment id"));
        }
        let reference = get("sb").ok_or_else(|| crate::Error::validation("sb", "missing"))?;
        if reference.trim().is_empty() {
            return Err(crate::Error::validation("sb", "empty"));
        }
        Ok(CallbackParams {
            payment_id,
            reference,
        })
    }
}

/// A download link of a paid virtual order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLink {
    /// File name.
    pub name: String,
    /// Human size (`200 KB`).
    pub size: String,
    /// Type (`pdf`).
    pub mime: String,
    /// Allowed downloads (Persian text, e.g. `بدون محدودیت`).
    pub count: String,
    /// Expiry (Jalali date-time text).
    pub expire: String,
    /// URL.
    pub link: String,
}

/// `checkPay` `links` of a virtual order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadLinks {
    /// `error = 0`: the links.
    Ready(Vec<DownloadLink>),
    /// `error = 1`: the error text.
    Failed(String),
}

/// `checkPay` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentCheck {
    /// Payment id.
    pub payment_id: String,
    /// `verify == 1`.
    pub verified: bool,
    /// Status text.
    pub message: String,
    /// Tracking code of a successful payment.
    pub tracking_code: Option<String>,
    /// Virtual orders only.
    pub links: Option<DownloadLinks>,
}

/// `orderPay` result: can the order be paid (again), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPayStatus {
    /// `vaziat` — current status text.
    pub status: String,
    /// Factor id (shown hyphenated on the wire).
    pub factor: FactorId,
    /// Postal barcode (may be empty).
    pub barcode: String,
    /// `product`, `virtual`, `service`…
    pub order_type: String,
    /// Order total.
    pub price: i64,
    /// Still to pay.
    pub remainder_price: i64,
    /// Paid so far.
    pub pay_price: i64,
    /// Gateways; non-empty means `continuePay` may be called.
    pub banks: Vec<Bank>,
}

/// `tracking.order.buy_type` — a different encoding than registerOrder's (0 COD, 1 cash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingBuyType {
    /// 0.
    Cod,
    /// 1.
    Cash,
    /// Anything else, kept.
    Other(i64),
}

/// `tracking.order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedOrder {
    /// Factor id.
    pub factor: FactorId,
    /// Post barcode (empty until shipped).
    pub barcode: String,
    /// Status text (Persian, e.g. `معلق`).
    pub status: String,
    /// Registration date (Jalali text).
    pub date: String,
    /// Last status change (Jalali text).
    pub change_date: String,
    /// Order total.
    pub price: i64,
    /// Payment kind.
    pub buy_type: TrackingBuyType,
    /// Description.
    pub desc: String,
    /// Order type code.
    pub order_type: i64,
}

/// `tracking.payment`: present when an online payment is outstanding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingPayment {
    /// Text for the buyer.
    pub message: String,
    /// Continue-payment link to show the buyer.
    pub pay_link: String,
}

/// `tracking` result.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    /// Buyer name.
    pub customer: String,
    /// The order.
    pub order: TrackedOrder,
    /// Seller info once shipped (shape undocumented, kept raw).
    pub seller: Value,
    /// Outstanding payment, if any.
    pub payment: Option<TrackingPayment>,
}

// ---------------------------------------------------------------------------------------------
// Decoders: `Err(String)` describes the mismatch; the client wraps it in `Error::Protocol`.

/// Integer from a JSON number or numeric string.
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn int_field(obj: &Value, key: &str) -> Result<i64, String> {
    obj.get(key)
        .and_then(as_int)
        .ok_or_else(|| format!("`{key}` missing or not an integer"))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("`{what}` is not an object"))
}

/// PHP encodes an empty associative array as `[]`.
fn is_empty_php_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.is_empty()) || v.is_null()
}

fn factor_field(v: Option<&Value>, what: &str) -> Result<FactorId, String> {
    match v {
        Some(Value::String(s)) => {
            FactorId::from_server(s).ok_or_else(|| format!("`{what}` is not a digit string"))
        }
        Some(Value::Number(_)) => Err(format!(
            "`{what}` is a JSON number; factor ids must be strings (precision loss)"
        )),
        _ => Err(format!("`{what}` missing")),
    }
}

/// Decode `getPrices.result`.
pub fn decode_prices(result: &Value) -> Result<Prices, String> {
    let mut quotes = Vec::new();
    if is_empty_php_array(result) {
        return Ok(Prices { quotes });
    }
    let root = object(result, "result")?;
    for (key, buy_type) in [("naghdi", BuyType::OnlineCash), ("posti", BuyType::Cod)] {
        let Some(group) = root.get(key) else { continue };
        if is_empty_php_array(group) {
            continue;
        }
        let group = object(group, key)?;
        let mut entries: Vec<Quote> = Vec::new();
        for (send, q) in group {
            let code: i64 = send
                .parse()
                .map_err(|_| format!("`{key}.{send}` is not a send_type"))?;
            // An unknown send type from a newer server is skipped, not fatal.
            let Ok(send_type) = SendType::try_from(code) else {
                continue;
            };
            object(q, send)?;
            entries.push(Quote {
                buy_type,
                send_type,
                post: int_field(q, "post")?,
                tax: int_field(q, "tax")?,
                frotel_service: int_field(q, "frotel_service")?,
                packing: q.get("packing").and_then(as_int).unwrap_or(0),
            });
        }
        entries.sort_by_key(|q| q.send_type.code());
        quotes.extend(entries);
    }
    Ok(Prices { quotes })
}

fn decode_banks(v: Option<&Value>) -> Result<Vec<Bank>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    if v.is_null() {
        return Ok(Vec::new());
    }
    let arr: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        // PHP arrays with non-sequential keys arrive as objects.
        Value::Object(o) => o.values().collect(),
        _ => return Err("`banks` is not a list".into()),
    };
    arr.into_iter()
        .map(|b| {
            object(b, "banks[]")?;
            Ok(Bank {
                id: int_field(b, "id")?,
                name: text(b.get("name")),
                icon: b
                    .get("icon")
                    .or_else(|| b.get("logo"))
                    .and_then(|s| s.as_str().map(str::to_owned)),
            })
        })
        .collect()
}

/// Decode `registerOrder*.result`.
pub fn decode_registered(result: &Value) -> Result<RegisteredOrder, String> {
    object(result, "result")?;
    let factor = result.get("factor").ok_or("`factor` missing")?;
    object(factor, "factor")?;
    let items = match result.get("items") {
        None => Vec::new(),
        Some(v) if is_empty_php_array(v) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|i| {
                object(i, "items[]")?;
                Ok(FactorItem {
                    name: text(i.get("name")),
                    num: int_field(i, "num")?,
                    price: int_field(i, "price")?,
                    pro_code: text(i.get("pro_code")),
                    weight: i.get("weight").and_then(as_int).unwrap_or(0),
                    option: text(i.get("option")),
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        Some(_) => return Err("`items` is not a list".into()),
    };
    Ok(RegisteredOrder {
        factor: factor_field(factor.get("id"), "factor.id")?,
        view: text(factor.get("view")),
        total: int_field(factor, "total")?,
        // The docs put banks under factor; accept them at the top level too.
        banks: decode_banks(factor.get("banks").or_else(|| result.get("banks")))?,
        items,
    })
}

/// Decode `pay` / `continuePay` `.result`.
pub fn decode_form(result: &Value) -> Result<PaymentForm, String> {
    match result {
        Value::String(s) if !s.trim().is_empty() => Ok(PaymentForm { html: s.clone() }),
        _ => Err("`result` is not a non-empty HTML string".into()),
    }
}

/// Decode `checkPay.result`.
pub fn decode_check(result: &Value) -> Result<PaymentCheck, String> {
    object(result, "result")?;
    let verified = match result.get("verify").and_then(as_int) {
        Some(1) => true,
        Some(0) => false,
        _ => return Err("`verify` missing or not 0/1".into()),
    };
    let tracking_code = Some(text(result.get("code"))).filter(|s| !s.is_empty());
    let links = match result.get("links") {
        None => None,
        Some(v) if is_empty_php_array(v) => None,
        Some(l) => {
            object(l, "links")?;
            match l.get("error").and_then(as_int) {
                Some(0) => {
                    let msgs = match l.get("message") {
                        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
                        Some(Value::Object(o)) => o.values().collect(),
                        _ => return Err("`links.message` is not a list".into()),
                    };
                    let links = msgs
                        .into_iter()
                        .map(|m| {
                            object(m, "links.message[]")?;
                            Ok(DownloadLink {
                                name: text(m.get("name")),
                                size: text(m.get("size")),
                                mime: text(m.get("mime")),
                                count: text(m.get("count")),
                                expire: text(m.get("expire")),
                                link: m
                                    .get("link")
                                    .and_then(Value::as_str)
                                    .ok_or("`link` missing")?
                                    .to_owned(),
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    Some(DownloadLinks::Ready(links))
                }
                Some(_) => Some(DownloadLinks::Failed(text(l.get("message")))),
                None => return Err("`links.error` missing".into()),
            }
        }
    };
    Ok(PaymentCheck {
        payment_id: text(result.get("id")),
        verified,
        message: text(result.get("message")),
        tracking_code,
        links,
    })
}

/// Decode `orderPay.result`.
pub fn decode_order_pay(result: &Value) -> Result<OrderPayStatus, String> {
    object(result, "result")?;
    Ok(OrderPayStatus {
        status: text(result.get("vaziat")),
        factor: factor_field(result.get("factor"), "factor")?,
        barcode: text(result.get("barcode")),
        order_type: text(result.get("order_type")),
        price: int_field(result, "price")?,
        remainder_price: int_field(result, "remainder_price")?,
        pay_price: int_field(result, "pay_price")?,
        banks: decode_banks(result.get("banks"))?,
    })
}

/// Decode `tracking.result`.
pub fn decode_tracking(result: &Value) -> Result<Tracking, String> {
    object(result, "result")?;
    let order = result.get("order").ok_or("`order` missing")?;
    object(order, "order")?;
    let buy_type = match order.get("buy_type").and_then(as_int) {
        Some(0) => TrackingBuyType::Cod,
        Some(1) => TrackingBuyType::Cash,
        Some(n) => TrackingBuyType::Other(n),
        None => return Err("`order.buy_type` missing".into()),
    };
    let payment = match result.get("payment") {
        None => None,
        Some(v) if is_empty_php_array(v) => None,
        Some(p) => {
            object(p, "payment")?;
            let pay_link = text(p.get("pay_link"));
            let message = text(p.get("message"));
            (!pay_link.is_empty() || !message.is_empty())
                .then_some(TrackingPayment { message, pay_link })
        }
    };
    Ok(Tracking {
        customer: text(result.get("customer")),
        order: TrackedOrder {
            factor: factor_field(order.get("factor"), "order.factor")?,
            barcode: text(order.get("barcode")),
            status: text(order.get("status")),
            date: text(order.get("date")),
            change_date: text(order.get("change_date")),
            price: int_field(order, "price")?,
            buy_type,
            desc: text(order.get("desc")),
            order_type: order.get("type").and_then(as_int).unwrap_or(0),
        },
        seller: result.get("seller").cloned().unwrap_or(Value::Null),
        payment,
    })
}
