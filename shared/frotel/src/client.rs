//! The Frotel client: form-encoded POSTs to one of three mirrors, with failover and a small
//! per-mirror circuit breaker. See the crate docs for exactly which failures fail over.

use crate::error::Error;
use crate::form::{self, FormValue};
use crate::model::{FactorId, PhysicalOrder, PriceRequest, ServiceOrder, VirtualOrder};
use crate::response::{
    self, CallbackParams, EnvelopeError, OrderPayStatus, PaymentCheck, PaymentForm, Prices,
    RegisteredOrder, Tracking,
};
use reqwest::Url;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The three public mirrors from the seller documentation (plain HTTP).
pub const DEFAULT_MIRRORS: [&str; 3] = [
    "http://webservice1.link/ws/v1/rest/",
    "http://webservice2.link/ws/v1/rest/",
    "http://webservice3.link/ws/v1/rest/",
];

/// Method paths, relative to a mirror's base URL.
pub mod paths {
    /// Shipping quotes.
    pub const GET_PRICES: &str = "order/getPrices.json";
    /// Register a physical order.
    pub const REGISTER_ORDER: &str = "order/registerOrder.json";
    /// Register a virtual order.
    pub const REGISTER_ORDER_VIRTUAL: &str = "order/registerOrderVirtual.json";
    /// Register a service order.
    pub const REGISTER_ORDER_SERVICE: &str = "order/registerOrderService.json";
    /// Bank redirect form.
    pub const PAY: &str = "payment/pay.json";
    /// Verify a payment after the bank callback.
    pub const CHECK_PAY: &str = "payment/checkPay.json";
    /// Can the order be paid (again)?
    pub const ORDER_PAY: &str = "order/orderPay.json";
    /// Bank redirect form for a continued payment.
    pub const CONTINUE_PAY: &str = "payment/continuePay.json";
    /// Order tracking.
    pub const TRACKING: &str = "order/tracking.json";
}

/// Client settings. `Debug` redacts the API key.
#[derive(Clone)]
pub struct ClientConfig {
    /// API key (form field `api`), from fpanel.ir.
    pub api_key: String,
    /// Mirror base URLs, tried in this order (a missing trailing `/` is added).
    pub mirrors: Vec<String>,
    /// Upper bound for establishing a TCP connection. A connect timeout means nothing was sent.
    /// Must be shorter than `read_timeout` and `request_timeout` (checked by
    /// [`FrotelClient::new`]): reqwest's read timer also runs while connecting.
    pub connect_timeout: Duration,
    /// Upper bound between reads once the request is on the wire.
    pub read_timeout: Duration,
    /// Upper bound for a whole attempt on one mirror.
    pub request_timeout: Duration,
    /// How long a failed mirror is skipped while another one is considered healthy.
    pub unhealthy_for: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_key", &"<redacted>")
            .field("mirrors", &self.mirrors)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("unhealthy_for", &self.unhealthy_for)
            .finish()
    }
}

impl ClientConfig {
    /// Defaults: the three public mirrors, 3 s connect, 15 s read, 30 s per attempt, 30 s
    /// breaker.
    pub fn new(api_key: impl Into<String>) -> Self {
        ClientConfig {
            api_key: api_key.into(),
            mirrors: DEFAULT_MIRRORS.iter().map(|s| (*s).to_owned()).collect(),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            unhealthy_for: Duration::from_secs(30),
        }
    }
}

/// Whether a method may be repeated on another mirror after it possibly reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Read-only (`getPrices`, `orderPay`, `tracking`): fail over on any mirror fault.
    Idempotent,
    /// Creates or settles something (`registerOrder*`, `pay`, `continuePay`, `checkPay`): fail
    /// over only when the request provably never left; otherwise [`Error::OutcomeUnknown`].
    NonIdempotent,
}

/// Health of one mirror as seen by this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorHealth {
    /// Base URL.
    pub base_url: String,
    /// False while inside the `unhealthy_for` window after a failure.
    pub healthy: bool,
}

/// Frotel seller web-service client. Cheap to clone (shared connection pool and breaker).
#[derive(Clone)]
pub struct FrotelClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FrotelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrotelClient")
            .field("mirrors", &self.mirror_health())
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    api_key: String,
    mirrors: Vec<Url>,
    failed_at: Mutex<Vec<Option<Instant>>>,
    unhealthy_for: Duration,
}

/// What one attempt on one mirror produced, when it was not a final answer.
enum Fault {
    /// Nothing reached the server: always safe to try the next mirror.
    NotSent(String),
    /// The server may have processed the request.
    AfterSend(String),
    /// The server answered something that is not an envelope (may have processed it).
    NotEnvelope(String),
}

impl FrotelClient {
    /// Build a client. Fails on an empty key, no mirrors or an unparsable mirror URL.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.api_key.trim().is_empty() {
            return Err(Error::Config("api_key is empty".into()));
        }
        // reqwest's read timeout also runs during connect: if it fired first, a stalled connect
        // would look like "sent, no answer" and non-idempotent calls would not fail over.
        if config.connect_timeout >= config.read_timeout
            || config.connect_timeout >= config.request_timeout
        {
            return Err(Error::Config(
                "connect_timeout must be shorter than read_timeout and request_timeout".into(),
            ));
        }
        if config.mirrors.is_empty() {
            return Err(Error::Config("no mirrors configured".into()));
        }
        let mirrors = config
            .mirrors
            .iter()
            .map(|m| {
                let s = if m.ends_with('/') {
                    m.clone()
                } else {
                    format!("{m}/")
                };
                Url::parse(&s).map_err(|e| Error::Config(format!("mirror `{m}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(FrotelClient {
            inner: Arc::new(Inner {
                http,
                api_key: config.api_key,
                failed_at: Mutex::new(vec![None; mirrors.len()]),
                mirrors,
                unhealthy_for: config.unhealthy_for,
            }),
        })
    }

    /// Current breaker view of every mirror.
    pub fn mirror_health(&self) -> Vec<MirrorHealth> {
        let now = Instant::now();
        let failed = self.failed_snapshot();
        self.inner
            .mirrors
            .iter()
            .zip(failed)
            .map(|(u, f)| MirrorHealth {
                base_url: u.to_string(),
                healthy: f.is_none_or(|t| now.duration_since(t) >= self.inner.unhealthy_for),
            })
            .collect()
    }

    /// Forget every recorded failure.
    pub fn reset_mirror_health(&self) {
        if let Ok(mut f) = self.inner.failed_at.lock() {
            f.iter_mut().for_each(|x| *x = None);
        }
    }

    /// `order/getPrices.json`: shipping quotes per payment × shipping method.
    pub async fn get_prices(&self, req: &PriceRequest) -> Result<Prices, Error> {
        req.validate()?;
        let (result, mirror) = self
            .call(paths::GET_PRICES, Idempotency::Idempotent, req.to_form())
            .await?;
        response::decode_prices(&result).map_err(|detail| Error::Protocol { mirror, detail })
    }

    /// `order/registerOrder.json` (physical goods). Validated before sending.
    pub async fn register_order(&self, order: &PhysicalOrder) -> Result<RegisteredOrder, Error> {
        order.validate()?;
        self.register(paths::REGISTER_ORDER, order.to_form()).await
    }

    /// `order/registerOrderVirtual.json`. Validated before sending.
    pub async fn register_order_virtual(
        &self,
        order: &VirtualOrder,
    ) -> Result<RegisteredOrder, Error> {
        order.validate()?;
        self.register(paths::REGISTER_ORDER_VIRTUAL, order.to_form())
            .await
    }

    /// `order/registerOrderService.json`. Validated before sending.
    pub async fn register_order_service(
        &self,
        order: &ServiceOrder,
    ) -> Result<RegisteredOrder, Error> {
        order.validate()?;
        self.register(paths::REGISTER_ORDER_SERVICE, order.to_form())
            .await
    }

    async fn register(
        &self,
        method: &'static str,
        fields: Vec<(String, FormValue)>,
    ) -> Result<RegisteredOrder, Error> {
        let (result, mirror) = self
            .call(method, Idempotency::NonIdempotent, fields)
            .await?;
        // code 0 means the order exists; an unreadable factor id leaves the caller unable to
        // refer to it, which is the same situation as not knowing the outcome.
        response::decode_registered(&result).map_err(|detail| Error::OutcomeUnknown {
            method,
            mirror,
            detail: format!("registered (code 0) but result unreadable: {detail}"),
        })
    }

    /// `payment/pay.json`: the bank redirect form for a freshly registered cash order.
    pub async fn pay(
        &self,
        factor: &FactorId,
        bank: i64,
        callback: &str,
    ) -> Result<PaymentForm, Error> {
        self.payment_form(paths::PAY, factor, bank, callback).await
    }

    /// `payment/continuePay.json`: the bank form for a retried / difference payment.
    pub async fn continue_pay(
        &self,
        factor: &FactorId,
        bank: i64,
        callback: &str,
    ) -> Result<PaymentForm, Error> {
        self.payment_form(paths::CONTINUE_PAY, factor, bank, callback)
            .await
    }

    async fn payment_form(
        &self,
        method: &'static str,
        factor: &FactorId,
        bank: i64,
        callback: &str,
    ) -> Result<PaymentForm, Error> {
        if bank <= 0 {
            return Err(Error::validation("bank", "bank id must be > 0"));
        }
        let cb = Url::parse(callback).map_err(|e| Error::validation("callback", e.to_string()))?;
        if !matches!(cb.scheme(), "http" | "https") {
            return Err(Error::validation("callback", "must be an http(s) URL"));
        }
        let fields = vec![
            ("factor".into(), factor.as_str().into()),
            ("bank".into(), bank.into()),
            ("callback".into(), callback.into()),
        ];
        let (result, mirror) = self
            .call(method, Idempotency::NonIdempotent, fields)
            .await?;
        response::decode_form(&result).map_err(|detail| Error::Protocol { mirror, detail })
    }

    /// `payment/checkPay.json`: verify (and thereby settle) a payment after the bank callback.
    /// Must be called for every callback, or the bank reverses the transaction.
    pub async fn check_pay(
        &self,
        factor: &FactorId,
        callback: &CallbackParams,
    ) -> Result<PaymentCheck, Error> {
        let fields = vec![
            ("paymentId".into(), callback.payment_id.clone().into()),
            ("ref".into(), callback.reference.clone().into()),
            ("factor".into(), factor.as_str().into()),
        ];
        let (result, mirror) = self
            .call(paths::CHECK_PAY, Idempotency::NonIdempotent, fields)
            .await?;
        response::decode_check(&result).map_err(|detail| Error::OutcomeUnknown {
            method: paths::CHECK_PAY,
            mirror,
            detail: format!("checkPay answered code 0 but result unreadable: {detail}"),
        })
    }

    /// `order/orderPay.json`: whether the order can be paid (again), and the gateways.
    pub async fn order_pay(&self, factor: &FactorId) -> Result<OrderPayStatus, Error> {
        let fields = vec![("factor".into(), factor.as_str().into())];
        let (result, mirror) = self
            .call(paths::ORDER_PAY, Idempotency::Idempotent, fields)
            .await?;
        response::decode_order_pay(&result).map_err(|detail| Error::Protocol { mirror, detail })
    }

    /// `order/tracking.json`.
    pub async fn tracking(&self, factor: &FactorId) -> Result<Tracking, Error> {
        let fields = vec![("factor".into(), factor.as_str().into())];
        let (result, mirror) = self
            .call(paths::TRACKING, Idempotency::Idempotent, fields)
            .await?;
        response::decode_tracking(&result).map_err(|detail| Error::Protocol { mirror, detail })
    }

    fn failed_snapshot(&self) -> Vec<Option<Instant>> {
        match self.inner.failed_at.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_failed(&self, index: usize, at: Option<Instant>) {
        let mut g = match self.inner.failed_at.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(slot) = g.get_mut(index) {
            *slot = at;
        }
    }

    /// Mirror indices in the order to try: healthy ones in configured order, then the ones
    /// inside their breaker window, least recently failed first (a last resort rather than a
    /// hard refusal, so an all-red breaker never blocks traffic on its own).
    fn attempt_order(&self) -> Vec<usize> {
        let now = Instant::now();
        let failed = self.failed_snapshot();
        let mut healthy = Vec::new();
        let mut sick: Vec<(Instant, usize)> = Vec::new();
        for (i, f) in failed.iter().enumerate() {
            match f {
                Some(t) if now.duration_since(*t) < self.inner.unhealthy_for => sick.push((*t, i)),
                _ => healthy.push(i),
            }
        }
        sick.sort();
        healthy.extend(sick.into_iter().map(|(_, i)| i));
        healthy
    }

    /// POST `fields` + `api` to the mirrors until one gives an envelope; `Ok` only on `code 0`.
    /// Returns the `result` and the base URL of the mirror that answered.
    pub async fn call(
        &self,
        method: &'static str,
        idempotency: Idempotency,
        mut fields: Vec<(String, FormValue)>,
    ) -> Result<(Value, String), Error> {
        fields.push(("api".into(), self.inner.api_key.clone().into()));
        let body = form::encode(&fields);
        let order = self.attempt_order();
        let attempts = order.len();
        let mut last: Option<(String, Fault)> = None;
        for index in order {
            let base = &self.inner.mirrors[index];
            let mirror = base.to_string();
            let url = base
                .join(method)
                .map_err(|e| Error::Config(format!("{mirror}{method}: {e}")))?;
            match self.attempt(url, body.clone()).await {
                Ok(env) => {
                    self.set_failed(index, None);
                    if env.code != 0 {
                        // A business answer is the same on every mirror: never fail over.
                        return Err(Error::Business {
                            code: env.code,
                            message: env.message,
                        });
                    }
                    return Ok((env.result, mirror));
                }
                Err(fault) => {
                    self.set_failed(index, Some(Instant::now()));
                    let detail = match &fault {
                        Fault::NotSent(d) | Fault::AfterSend(d) | Fault::NotEnvelope(d) => d,
                    };
                    let ambiguous = !matches!(fault, Fault::NotSent(_));
                    if ambiguous && idempotency == Idempotency::NonIdempotent {
                        tracing::warn!(%mirror, method, %detail, "Frotel outcome unknown; not retrying");
                        return Err(Error::OutcomeUnknown {
                            method,
                            mirror,
                            detail: detail.clone(),
                        });
                    }
                    tracing::warn!(%mirror, method, %detail, "Frotel mirror failed; trying the next one");
                    last = Some((mirror, fault));
                }
            }
        }
        Err(match last {
            Some((mirror, Fault::NotEnvelope(detail))) => Error::Protocol { mirror, detail },
            Some((mirror, Fault::NotSent(detail) | Fault::AfterSend(detail))) => Error::Transport {
                mirror,
                attempts,
                detail,
            },
            None => Error::Config("no mirrors configured".into()),
        })
    }

    /// One POST to one mirror. `Ok` = a decodable envelope (any status but 5xx).
    async fn attempt(&self, url: Url, body: String) -> Result<response::Envelope, Fault> {
        let resp = self
            .inner
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // Only a connector failure (refused, DNS, connect timeout) proves nothing was
                // sent; every other error may come after the server read the request.
                if e.is_connect() {
                    Fault::NotSent(format!("connect: {e}"))
                } else {
                    Fault::AfterSend(format!("request: {e}"))
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Fault::AfterSend(format!("reading body after HTTP {status}: {e}")))?;
        if status.is_server_error() {
            return Err(Fault::AfterSend(format!("HTTP {status}")));
        }
        response::decode_envelope(&bytes).map_err(|e| match e {
            EnvelopeError::NotJson(d) | EnvelopeError::NotEnvelope(d) => {
                Fault::NotEnvelope(format!("HTTP {status}: {d}"))
            }
        })
    }
}
