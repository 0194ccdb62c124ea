//! Shared test harness: a stand-in with its own database and queues, answers captured from a
//! test queue, decoded with the contracts and validated against the committed JSON Schemas.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orderbus_contracts::schema::schema_file_name;
use orderbus_contracts::{BusMessage, RoutingKey};
use orderbus_erp_sim::{delete_topology, ErpSim, RunningErpSim, SimConfig};
use orderbus_testkit::{amqp_url, unique_suffix, Received, RouteSink, TestDb, TestQueue};
use rand::Rng;
use serde_json::Value;

/// Upper bound for waiting on an answer (never an expectation of speed).
pub const WAIT: Duration = Duration::from_secs(20);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures").join(rel)).expect("fixture exists")
}

/// A random code in the range the spec's samples use, unique enough per test.
pub fn random_code() -> i64 {
    rand::rng().random_range(1_000_000_000..2_000_000_000)
}

pub struct Sim {
    pub db: TestDb,
    pub sim: Option<RunningErpSim>,
    pub config: SimConfig,
    /// The customer this test plays; the stand-in answers only for them.
    pub uid: i64,
    /// The storefront's subscriptions, as in production, so every answer is routable even when
    /// a test listens to only some keys (an unroutable answer would hold back its order's next).
    _storefront_routes: RouteSink,
}

impl Sim {
    /// Starts a stand-in with a unique service name and database, serving one random uid.
    pub async fn start(tune: impl FnOnce(&mut SimConfig)) -> Sim {
        let db = TestDb::create().await.expect("test database");
        let uid = random_code();
        let mut config = SimConfig::for_tests(
            format!("erp-sim-test-{}", unique_suffix()),
            db.url(),
            amqp_url(),
        );
        config.only_uids = Some([uid].into_iter().collect());
        tune(&mut config);
        let keys: Vec<&str> = RoutingKey::ALL
            .iter()
            .filter(|k| {
                k.subscribers()
                    .contains(&orderbus_contracts::Party::Storefront)
            })
            .map(|k| k.as_str())
            .collect();
        let storefront_routes = RouteSink::bind(&keys).await.expect("route sink");
        let sim = ErpSim::start(config.clone())
            .await
            .expect("stand-in starts");
        Sim {
            db,
            sim: Some(sim),
            config,
            uid,
            _storefront_routes: storefront_routes,
        }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.db.pool()
    }

    /// Stops the stand-in and deletes its queues.
    pub async fn finish(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await.expect("clean shutdown");
        }
        delete_topology(&self.config).await.expect("queues deleted");
    }
}

impl Drop for Sim {
    /// A test that panicked before [`Sim::finish`]: stop the stand-in and delete its queues
    /// anyway, so no durable queue keeps collecting copies of everyone's messages.
    fn drop(&mut self) {
        let Some(sim) = self.sim.take() else {
            return;
        };
        // Stop first: deleting the queues of running consumers would make them redeclare.
        sim.shutdown_token().cancel();
        drop(sim);
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Err(e) = delete_topology(&config).await {
                    eprintln!(
                        "erp-sim test: could not delete queues of {}: {e}",
                        config.service
                    );
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Decodes an answer with the contracts, validates it against `schemas/`, and checks the kit's
/// AMQP properties.
pub fn check(r: &Received, app_id: &str) -> BusMessage {
    let key: RoutingKey = r.routing_key.parse().expect("a spec routing key");
    let message = BusMessage::decode(key, &r.body)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", r.routing_key));
    let schema_text =
        std::fs::read_to_string(repo_root().join("schemas").join(schema_file_name(key)))
            .expect("schema file");
    let schema: Value = serde_json::from_str(&schema_text).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let instance: Value = serde_json::from_slice(&r.body).expect("JSON body");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{key} fails its schema: {errors:?}");
    // The body is exactly the contract's encoding (no envelope, spec field names).
    assert_eq!(
        instance,
        message.to_json().expect("re-encode"),
        "{key}: body differs from its contract encoding"
    );
    let p = &r.properties;
    assert_eq!(p.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        p.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(p.app_id().as_ref().map(|a| a.as_str()), Some(app_id));
    assert!(p
        .message_id()
        .as_ref()
        .is_some_and(|m| !m.as_str().is_empty()));
    assert!(p.timestamp().is_some());
    let has_traceparent = p
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key("traceparent"));
    assert!(has_traceparent, "traceparent header");
    message
}

/// Receives until `want` messages matched `keep`; others (other tests' traffic, answers a later
/// `collect` asks for) stay held in the queue for later calls. Panics after [`WAIT`].
pub async fn collect(
    queue: &mut TestQueue,
    app_id: &str,
    want: usize,
    keep: impl Fn(&BusMessage) -> bool,
) -> Vec<BusMessage> {
    let deadline = Instant::now() + WAIT;
    let wanted = |r: &Received| {
        r.routing_key
            .parse::<RoutingKey>()
            .ok()
            .and_then(|key| BusMessage::decode(key, &r.body).ok())
            .is_some_and(|m| keep(&m))
    };
    let mut out = Vec::new();
    while out.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = queue.recv_where(left, wanted).await.unwrap_or_else(|e| {
            panic!("waited for {want} answers, got {}: {e}; {out:?}", out.len())
        });
        out.push(check(&r, app_id));
    }
    out
}

/// Polls `query` (returning a count) until it is at least `n`; panics after [`WAIT`].
pub async fn wait_count(pool: &sqlx::PgPool, query: &str, bind: &str, n: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
            .bind(bind)
            .fetch_one(pool)
            .await
            .expect("query");
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query} [{bind}] stayed at {got} < {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
