//! Settings of the ERP stand-in: delays, rates, and the auto-pay convenience.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use orderbus_runtime::parse_duration;
use orderbus_runtime::{Config, Secret};

/// Default database of the stand-in (its inbox, outbox and scheduled answers).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/orderbus_erp_sim";
/// Default address and port of the ops HTTP server (text: clap defaults of the `run` command).
pub const DEFAULT_HTTP_HOST: &str = "127.0.0.1";
pub const DEFAULT_HTTP_PORT_TEXT: &str = "8099";
const DEFAULT_HTTP_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DEFAULT_HTTP_PORT: u16 = 8099;
/// Default service name: queues are `erp-sim.<routing key>`, AMQP `app_id` is `erp-sim`.
pub const DEFAULT_SERVICE: &str = "erp-sim";

/// How long the stand-in waits before each answer. Every delay counts from the previous step
/// of the same order / exchange / return (they add up), not from the triggering message.
#[derive(Clone, Debug, PartialEq)]
pub struct Delays {
    /// order.submit → order.payment (auto-pay only).
    pub auto_pay: Duration,
    /// order.payment → order.erpstatus 100 (audited).
    pub audit: Duration,
    /// 100 → 200 (stocked).
    pub stock: Duration,
    /// 200 → 600 (shipped, with express_id/express_number).
    pub ship: Duration,
    /// 600 → 700 (delivered).
    pub deliver: Duration,
    /// 700 → erp.updateInvoicePdfUrl blue; return 40 → red.
    pub invoice: Duration,
    /// order.createChangeOrder / order.createRefundOrder → erp.createChangeOrder /
    /// erp.createRefundOrder.
    pub create_answer: Duration,
    /// create answer (200) → erp.updateChangeRefundOrderStatus 10 (approved).
    pub approve: Duration,
    /// customer's waybill → return 20 (goods sent back).
    pub sent_back: Duration,
    /// → 30 (goods received into the warehouse), exchange and return.
    pub received: Duration,
    /// 30 → exchange 50 (completed) / return 40 (refunded).
    pub complete: Duration,
}

impl Delays {
    /// Human-watchable delays for `make run` (submit → blue invoice takes about 17 s).
    pub fn dev() -> Self {
        let s = Duration::from_secs;
        Self {
            auto_pay: s(2),
            audit: s(2),
            stock: s(3),
            ship: s(3),
            deliver: s(5),
            invoice: s(2),
            create_answer: s(1),
            approve: s(2),
            sent_back: s(2),
            received: s(3),
            complete: s(3),
        }
    }

    /// Near-zero delays for tests (order is still guaranteed: each step is scheduled after the
    /// previous one of the same subject).
    pub fn fast() -> Self {
        let ms = Duration::from_millis;
        Self {
            auto_pay: ms(10),
            audit: ms(10),
            stock: ms(10),
            ship: ms(10),
            deliver: ms(10),
            invoice: ms(10),
            create_answer: ms(10),
            approve: ms(10),
            sent_back: ms(10),
            received: ms(10),
            complete: ms(10),
        }
    }

    /// Every delay set to `d`.
    pub fn uniform(d: Duration) -> Self {
        Self {
            auto_pay: d,
            audit: d,
            stock: d,
            ship: d,
            deliver: d,
            invoice: d,
            create_answer: d,
            approve: d,
            sent_back: d,
            received: d,
            complete: d,
        }
    }
}

/// Everything [`crate::ErpSim::start`] needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Queue prefix and AMQP `app_id`. Tests use a unique name so that each stand-in has its own
    /// queues.
    pub service: String,
    /// Broker, database, ops HTTP server (`/healthz`, `/readyz`, `/metrics`; port 0 = any),
    /// grace period, pool…: the runtime's settings, as the `run` command parsed them.
    pub runtime: Config,
    pub delays: Delays,
    /// Share of `order.createChangeOrder` / `order.createRefundOrder` rejected by "customer
    /// service" (500, status 91). `0.0` never, `1.0` always (both deterministic).
    pub reject_rate: f64,
    /// Chance that "customer service" changes the delivery address of a paid order
    /// (`erp.deliveryAddressUpdate`, sent right after 100). `0.0` never, `1.0` always.
    pub address_change_rate: f64,
    /// DEVELOPMENT CONVENIENCE: publish `order.payment` for every `order.submit` (except JIT
    /// children), standing in for the payments service. Off unless asked for.
    pub auto_pay: bool,
    /// Send `order.erpstatus` 906 (ERP auto-cancel) for an order submitted but not paid within
    /// this time. `None` (default): an unpaid order simply waits for its payment.
    pub unpaid_cancel_after: Option<Duration>,
    /// Carrier id in `order.erpstatus` 600 `data.express_id` (23 as in the spec's sample).
    pub express_id: i64,
    /// Invoice PDF URLs are `<base>/<order code>/blue.pdf` and `.../red.pdf`.
    pub invoice_base_url: String,
    /// Play the ERP only for these customers (`uid`); `None` = for everyone. Tests sharing one
    /// broker set it so that one test's stand-in does not answer another test's orders.
    pub only_uids: Option<BTreeSet<i64>>,
    /// How often the scheduler looks for due answers.
    pub sweep_interval: Duration,
}

impl SimConfig {
    /// Local defaults with the human-watchable [`Delays::dev`] and auto-pay off.
    pub fn local() -> Self {
        let mut runtime = Config::local(DEFAULT_SERVICE);
        runtime.database_url = Secret::new(DEFAULT_DATABASE_URL);
        runtime.http_addr = SocketAddr::new(DEFAULT_HTTP_ADDR, DEFAULT_HTTP_PORT);
        runtime.shutdown_grace = Duration::from_secs(10);
        Self {
            service: DEFAULT_SERVICE.to_owned(),
            runtime,
            delays: Delays::dev(),
            reject_rate: 0.0,
            address_change_rate: 0.0,
            auto_pay: false,
            unpaid_cancel_after: None,
            express_id: 23,
            invoice_base_url: "http://localhost/erp-sim/invoices".to_owned(),
            only_uids: None,
            sweep_interval: Duration::from_millis(200),
        }
    }

    /// Test settings: the given service name / database / broker, [`Delays::fast`], a fast
    /// sweep, any free HTTP port.
    pub fn for_tests(
        service: impl Into<String>,
        database_url: impl Into<String>,
        amqp_url: impl Into<String>,
    ) -> Self {
        let service = service.into();
        let mut runtime = Config::local(&service);
        runtime.amqp_url = Secret::new(amqp_url);
        runtime.database_url = Secret::new(database_url);
        runtime.http_addr = SocketAddr::new(DEFAULT_HTTP_ADDR, 0);
        runtime.shutdown_grace = Duration::from_secs(5);
        Self {
            service,
            runtime,
            delays: Delays::fast(),
            sweep_interval: Duration::from_millis(20),
            ..Self::local()
        }
    }

    /// Whether the stand-in plays the ERP for customer `uid`.
    pub fn serves(&self, uid: i64) -> bool {
        self.only_uids.as_ref().is_none_or(|set| set.contains(&uid))
    }
}

/// Decides a yes/no with probability `rate`: never for `rate <= 0`, always for `rate >= 1`
/// (no randomness at the ends, so tests are deterministic), random in between.
pub fn chance(rate: f64, rng: &mut impl rand::Rng) -> bool {
    if rate.is_nan() || rate <= 0.0 {
        false
    } else if rate >= 1.0 {
        true
    } else {
        rng.random::<f64>() < rate
    }
}

/// Parses a rate between 0 and 1.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{text:?} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn rates_parse_within_bounds() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("x").is_err());
    }

    #[test]
    fn chance_is_deterministic_at_the_ends_and_random_between() {
        let mut rng = rand::rng();
        assert!((0..1000).all(|_| !chance(0.0, &mut rng)));
        assert!((0..1000).all(|_| chance(1.0, &mut rng)));
        let draws: Vec<bool> = (0..1000).map(|_| chance(0.5, &mut rng)).collect();
        // 2^-999 chance of a false failure.
        assert!(draws.contains(&true) && draws.contains(&false));
    }

    #[test]
    fn uid_filter() {
        let mut c = SimConfig::local();
        assert!(c.serves(1));
        c.only_uids = Some([7].into_iter().collect());
        assert!(c.serves(7));
        assert!(!c.serves(1));
    }
}
