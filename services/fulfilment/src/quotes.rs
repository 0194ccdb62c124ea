//! Shipping quotes (`getPrices`) for the checkout: per buy type × send type the parts `post`,
//! `tax`, `frotel_service` and the shown total (their sum, seed 003). Through the mirrors with
//! failover, a short cache keyed by the inputs, and the merchant-configured default price when
//! no mirror answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use orderbus_frotel::{BuyType, Error as FrotelError, PriceRequest, SendType};
use serde::{Deserialize, Serialize};

use crate::{metrics, App, PARTNER};

/// `POST /fulfilment/quotes` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// Frotel destination city id.
    pub des_city: i64,
    /// Order total in Rial.
    pub price: i64,
    /// Order weight in grams.
    pub weight: i64,
    /// Send types to price (1 پیشتاز, 2 سفارشی, 3 مطبوعات, 4 پیک شهری).
    pub send_types: Vec<i64>,
    /// Buy types to price (1 COD, 2 online).
    pub buy_types: Vec<i64>,
}

/// One priced combination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteLine {
    pub buy_type: i64,
    pub send_type: i64,
    pub post: i64,
    pub tax: i64,
    pub frotel_service: i64,
    /// `post + tax + frotel_service`: what the customer is shown.
    pub total: i64,
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct QuoteAnswer {
    /// `frotel` (fresh), `cache`, or `default` (no mirror answered; the configured price).
    pub source: &'static str,
    pub quotes: Vec<QuoteLine>,
}

/// Why no quote.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("Frotel refused (code {code}): {message}")]
    Refused { code: i64, message: String },
    #[error("no Frotel mirror answered and no default shipping price is configured: {0}")]
    Unavailable(String),
}

type Key = (i64, i64, i64, Vec<i64>, Vec<i64>);

/// A short cache of quotes keyed by the inputs.
pub struct QuoteCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Instant, Vec<QuoteLine>)>>,
}

const MAX_ENTRIES: usize = 10_000;

impl QuoteCache {
    pub fn new(ttl: Duration) -> QuoteCache {
        QuoteCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &Key) -> Option<Vec<QuoteLine>> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, q)| q.clone())
    }

    fn put(&self, key: Key, quotes: Vec<QuoteLine>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), quotes));
    }
}

fn parse(req: &QuoteRequest) -> Result<PriceRequest, QuoteError> {
    let bad = |field: &str, e: FrotelError| match e {
        FrotelError::Validation { reason, .. } => QuoteError::Invalid {
            field: field.into(),
            reason,
        },
        other => QuoteError::Invalid {
            field: field.into(),
            reason: other.to_string(),
        },
    };
    let send_types = req
        .send_types
        .iter()
        .map(|s| SendType::try_from(*s).map_err(|e| bad("send_types", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let buy_types = req
        .buy_types
        .iter()
        .map(|b| BuyType::try_from(*b).map_err(|e| bad("buy_types", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let p = PriceRequest {
        des_city: req.des_city,
        price: req.price,
        weight: req.weight,
        send_types,
        buy_types,
    };
    p.validate().map_err(|e| match e {
        FrotelError::Validation { field, reason } => QuoteError::Invalid {
            field: match field.as_str() {
                "send_type" => "send_types".into(),
                "buy_type" => "buy_types".into(),
                _ => field,
            },
            reason,
        },
        other => QuoteError::Invalid {
            field: "request".into(),
            reason: other.to_string(),
        },
    })?;
    Ok(p)
}

/// Prices `req`.
pub async fn quote(app: &App, req: &QuoteRequest) -> Result<QuoteAnswer, QuoteError> {
    let p = parse(req)?;
    let mut sends: Vec<i64> = p.send_types.iter().map(|s| s.code()).collect();
    let mut buys: Vec<i64> = p.buy_types.iter().map(|b| b.code()).collect();
    sends.sort_unstable();
    sends.dedup();
    buys.sort_unstable();
    buys.dedup();
    let key: Key = (p.des_city, p.price, p.weight, sends.clone(), buys.clone());
    if let Some(quotes) = app.shared.quotes.get(&key) {
        metrics::quote("cache");
        return Ok(QuoteAnswer {
            source: "cache",
            quotes,
        });
    }
    let client = app.client();
    let result = app
        .calls
        .record(PARTNER, "getPrices", None, || client.get_prices(&p))
        .await;
    app.report_mirrors();
    match result {
        Ok(prices) => {
            let mut quotes: Vec<QuoteLine> = prices
                .quotes
                .iter()
                .map(|q| QuoteLine {
                    buy_type: q.buy_type.code(),
                    send_type: q.send_type.code(),
                    post: q.post,
                    tax: q.tax,
                    frotel_service: q.frotel_service,
                    total: q.shown_price(),
                })
                .collect();
            quotes.sort_by_key(|q| (q.buy_type, q.send_type));
            app.shared.quotes.put(key, quotes.clone());
            metrics::quote("frotel");
            Ok(QuoteAnswer {
                source: "frotel",
                quotes,
            })
        }
        Err(FrotelError::Business { code, message }) => {
            metrics::quote("refused");
            Err(QuoteError::Refused { code, message })
        }
        Err(FrotelError::Validation { field, reason }) => {
            Err(QuoteError::Invalid { field, reason })
        }
        Err(e) => match app.settings().default_shipping_price {
            Some(price) => {
                metrics::quote("default");
                tracing::warn!(error = %e, price, "no Frotel mirror answered getPrices: default price quoted");
                let quotes = buys
                    .iter()
                    .flat_map(|b| {
                        sends.iter().map(move |s| QuoteLine {
                            buy_type: *b,
                            send_type: *s,
                            post: price,
                            tax: 0,
                            frotel_service: 0,
                            total: price,
                        })
                    })
                    .collect();
                Ok(QuoteAnswer {
                    source: "default",
                    quotes,
                })
            }
            None => {
                metrics::quote("unavailable");
                Err(QuoteError::Unavailable(e.to_string()))
            }
        },
    }
}
