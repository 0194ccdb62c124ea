//! The harness: tracking services in process (127.0.0.1:0) on a fresh database and the real
//! broker, the SweetTracker simulator over real HTTP, a shared manual clock for the scheduler.

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_scheduler::ManualClock;
use orderbus_sweettracker::sim::{SimConfig, Simulator};
use orderbus_testkit::{unique_suffix, ErpPublisher, RouteSink, TestDb};
use orderbus_tracking::{start, topology_for, Settings, SiteDomain};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(60);

/// Short retry tiers, so that retried deliveries come back within a test.
const TEST_RETRY_TIERS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];
/// Every log line of the test process (the seed's lines are asserted on verbatim).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_logs() {
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,orderbus_tracking=debug,sqlx=warn,lapin=warn",
            ))
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    });
    let _ = buf;
}

/// The captured log lines containing `needle`.
pub fn log_lines(needle: &str) -> Vec<String> {
    let Some(buf) = LOGS.get() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Polls `probe` until it yields a value; [`WAIT`] is only an upper bound.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!("gave up waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 12:00 in Seoul, `days` after today's (in Seoul).
pub fn seoul_noon(days: i64) -> anyhow::Result<DateTime<Utc>> {
    let kst = chrono::FixedOffset::east_opt(9 * 3600).ok_or_else(|| anyhow!("offset"))?;
    let today = Utc::now().with_timezone(&kst).date_naive();
    let noon = (today + TimeDelta::days(days))
        .and_hms_opt(12, 0, 0)
        .ok_or_else(|| anyhow!("noon"))?;
    Ok(kst
        .from_local_datetime(&noon)
        .single()
        .ok_or_else(|| anyhow!("noon"))?
        .with_timezone(&Utc))
}

/// A unique order code for this test (every test's consumers see every test's messages).
pub fn order_code() -> i64 {
    let n = u64::from_str_radix(&unique_suffix()[..10], 16).unwrap_or(7) % 8_000_000_000_000;
    1_000_000_000_000 + n as i64
}

/// A unique waybill of 12 digits.
pub fn waybill() -> String {
    let n = u64::from_str_radix(&unique_suffix()[..10], 16).unwrap_or(7) % 900_000_000_000;
    format!("{}", 100_000_000_000 + n)
}

pub struct Instance {
    pub base: String,
    pub running: Option<Running>,
    pub shutdown: CancellationToken,
}

pub struct World {
    pub db: TestDb,
    /// Two days ahead of the wall clock, 10 s before noon in Seoul.
    pub clock: ManualClock,
    pub sim: Simulator,
    pub sim_base: String,
    pub service_name: String,
    pub http: reqwest::Client,
    auth: AuthSettings,
    pub erp: ErpPublisher,
    pub instances: Vec<Instance>,
    _sink: RouteSink,
    _cleanup: Cleanup,
}

struct Cleanup(Vec<orderbus_bus::Topology>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let topologies = std::mem::take(&mut self.0);
        orderbus_testkit::run_cleanup(async move {
            let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            for t in &topologies {
                let _ = t.remove(&ch, Duration::from_millis(500)).await;
            }
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

pub fn fast_sim() -> SimConfig {
    SimConfig {
        step_interval: Duration::from_millis(30),
        retry_delays: vec![Duration::from_millis(100), Duration::from_millis(300)],
        ..SimConfig::default()
    }
}

pub async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}

impl World {
    pub async fn new(sim: SimConfig) -> anyhow::Result<World> {
        init_logs();
        let db = TestDb::create().await?;
        let clock = ManualClock::new(seoul_noon(2)? - TimeDelta::seconds(10));
        let sim = Simulator::new(sim);
        let sim_base = serve(sim.router()).await?;
        let service_name = format!("tracking-{}", unique_suffix());
        let minted = orderbus_runtime::auth::mint_key(
            "tests",
            &[
                orderbus_tracking::TRACKING_READ.into(),
                orderbus_tracking::TRACKING_WRITE.into(),
            ],
        )?;
        let auth = AuthSettings::keys(ApiKeys::parse(&minted.entry)?);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", minted.key).parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        // The cleanup must name the same retry tiers as the replicas (see `settings`), or their
        // retry queues and exchanges stay on the shared broker.
        let settings = Settings {
            service_name: service_name.clone(),
            retry_tiers: TEST_RETRY_TIERS.to_vec(),
            ..Settings::default()
        };
        let cleanup = Cleanup(vec![topology_for(&settings)?]);
        Ok(World {
            db,
            clock,
            sim,
            sim_base,
            service_name,
            http,
            auth,
            erp: ErpPublisher::connect().await?,
            instances: Vec::new(),
            _sink: RouteSink::bind(&["order.updateExpressInfo"]).await?,
            _cleanup: cleanup,
        })
    }

    /// Settings of one replica (tests tweak them).
    pub fn settings(&self, replica: &str) -> Settings {
        let mut s = Settings {
            service_name: self.service_name.clone(),
            site_domain: SiteDomain::new("http://127.0.0.1:9"),
            clock: Arc::new(self.clock.clone()),
            replica: replica.to_owned(),
            retry_tiers: TEST_RETRY_TIERS.to_vec(),
            stale_after: Duration::from_secs(12 * 3600),
            ..Settings::default()
        };
        s.sweettracker.base_url = self.sim_base.clone();
        s
    }

    /// Starts a replica; its callback URL points at itself.
    pub async fn start(&mut self, settings: Settings) -> anyhow::Result<String> {
        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(self.db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 10;
        config.auth = self.auth.clone();
        let site = settings.site_domain.clone();
        let shutdown = CancellationToken::new();
        let running = start(config, settings, shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        site.set(base.clone());
        let http = self.http.clone();
        let ready = format!("{base}/readyz");
        eventually("tracking ready", || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let r = http.get(ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await?;
        self.instances.push(Instance {
            base: base.clone(),
            running: Some(running),
            shutdown,
        });
        Ok(base)
    }

    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        for i in &mut self.instances {
            i.shutdown.cancel();
            if let Some(r) = i.running.take() {
                r.wait().await?;
            }
        }
        Ok(())
    }

    pub async fn publish_600(
        &self,
        order_code: i64,
        uid: i64,
        express_id: i64,
        waybill: &str,
    ) -> anyhow::Result<()> {
        let body = json!({
            "uid": uid, "order_code": order_code, "status": 600,
            "data": { "express_id": express_id, "express_number": waybill }
        });
        self.erp
            .publish("order.erpstatus", body.to_string().as_bytes())
            .await?;
        Ok(())
    }

    pub async fn publish_change_order(
        &self,
        id: i64,
        source_order_code: i64,
        new_order_code: i64,
    ) -> anyhow::Result<()> {
        let body = json!({
            "code": 200, "message": "ok",
            "data": {
                "id": id, "init_order_code": source_order_code.to_string(),
                "source_order_code": source_order_code, "new_order_code": new_order_code,
                "exchange_id": id + 7, "returned_id": id + 8,
                "exchange_status": 10, "returned_status": 10
            }
        });
        self.erp
            .publish("erp.createChangeOrder", body.to_string().as_bytes())
            .await?;
        Ok(())
    }

    /// The order's shipments as `(order_status, stage)` once `ready` holds.
    pub async fn shipment_where(
        &self,
        order_code: i64,
        what: &str,
        ready: impl Fn(&str, Option<&str>) -> bool,
    ) -> anyhow::Result<(String, Option<String>)> {
        let pool = self.db.pool().clone();
        eventually(what, || {
            let pool = pool.clone();
            let ready = &ready;
            async move {
                let row: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT order_status, stage FROM trk_shipments WHERE order_code = $1 ORDER BY id LIMIT 1",
                )
                .bind(order_code)
                .fetch_optional(&pool)
                .await
                .ok()?;
                row.filter(|(s, st)| ready(s, st.as_deref()))
            }
        })
        .await
    }

    /// Waits until every scheduler loop sleeps, moves the clock to `to`, and waits for the
    /// registration slot `to` to be done.
    pub async fn run_slot(&self, to: DateTime<Utc>, replicas: usize) -> anyhow::Result<()> {
        let clock = self.clock.clone();
        eventually("schedulers asleep", || {
            let clock = clock.clone();
            async move { (clock.sleepers() >= 2 * replicas).then_some(()) }
        })
        .await?;
        self.clock.set(to);
        let pool = self.db.pool().clone();
        eventually("registration slot done", || {
            let pool = pool.clone();
            async move {
                let runs =
                    orderbus_scheduler::runs_of(&pool, orderbus_tracking::registration::JOB_NAME)
                        .await
                        .ok()?;
                runs.iter()
                    .any(|r| r.slot == to && r.status == "done")
                    .then_some(())
            }
        })
        .await
    }

    /// How many add_invoice calls were made for an order (the partner call log).
    pub async fn add_invoice_calls(&self, order_code: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM partner_calls WHERE partner = 'sweettracker' AND operation = 'add_invoice' AND order_ref = $1",
        )
        .bind(order_code.to_string())
        .fetch_one(self.db.pool())
        .await?)
    }

    pub async fn get(&self, base: &str, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.http.get(format!("{base}{path}")).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}
