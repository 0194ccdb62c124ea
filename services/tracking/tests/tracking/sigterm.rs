//! R12 with HTTP (messaging.md): the built `orderbus-tracking` binary gets a real SIGTERM while
//! ~1 000 `order.erpstatus` 600/s and ~200 SweetTracker callbacks/s arrive. It must exit 0
//! within its grace period; every callback that got an HTTP response got a non-5xx one and its
//! effect (event row + `order.updateExpressInfo` outbox row) is in the database exactly once;
//! a second process finishes the bus messages (each applied exactly once) and drains the outbox
//! rows the first one left pending. A request refused or reset before any response was not
//! accepted: it is counted, not failed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use orderbus_bus::{OutgoingMessage, Publisher};
use orderbus_ingress::CallbackTokens;
use orderbus_testkit::{amqp_url, unique_suffix, TestDb, TestQueue};
use orderbus_tracking::{topology_for, Settings};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{eventually, order_code};

const BIN: &str = env!("CARGO_BIN_EXE_orderbus-tracking");
const GRACE_SECS: u64 = 10;
/// Bus load: `BUS_MESSAGES` 600s at `BUS_RATE`/s (publishing goes on after the first process
/// stopped; the durable work queue keeps them for the second).
const BUS_MESSAGES: usize = 6000;
const BUS_RATE: u64 = 1000;
/// Webhook load: `HOOK_RATE` callbacks/s over `HOOK_SHIPMENTS` shipments, at most
/// `HOOK_IN_FLIGHT` at once (above the pool's spare connections, requests would queue for the
/// pool and time out: an overload 503, not a shutdown one).
const HOOK_RATE: u64 = 200;
const HOOK_SHIPMENTS: i64 = 200;
const HOOK_IN_FLIGHT: usize = 32;

/// One tracking process, its stderr in a file; killed (SIGKILL) if a failing test drops it
/// still running.
struct Process {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Process {
    fn spawn(service_name: &str, db: &TestDb, tag: &str) -> anyhow::Result<Process> {
        // A free port: bind :0, read it, release it (the child binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::env::temp_dir().join(format!("{service_name}-{tag}.log"));
        let child = Command::new(BIN)
            .env("TRACKING_SERVICE_NAME", service_name)
            // No registration job: it would call SweetTracker's dev host.
            .env("TRACKING_SCHEDULER", "false")
            .env("ORDERBUS_AMQP_URL", amqp_url())
            .env("ORDERBUS_DATABASE_URL", db.url())
            .env("ORDERBUS_HTTP_ADDR", "127.0.0.1")
            .env("ORDERBUS_HTTP_PORT", port.to_string())
            .env("ORDERBUS_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())
            .env("ORDERBUS_AUTH", "open")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .context("tracking binary")?;
        Ok(Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.base);
        eventually("tracking process ready", || async {
            let r = http.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await
    }

    /// Sends SIGTERM and waits for the exit; returns how long it took.
    async fn terminate(&mut self) -> anyhow::Result<Duration> {
        let (status, took) = orderbus_testkit::process::sigterm_and_wait(
            &mut self.child,
            Duration::from_secs(GRACE_SECS + 10),
        )
        .await?;
        anyhow::ensure!(
            status.success(),
            "exit status after SIGTERM: {status}; log:\n{}",
            self.log_text()
        );
        Ok(took)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Deletes the service's queues and tier exchanges (also after a failed test).
struct Cleanup(orderbus_bus::Topology);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let topology = self.0.clone();
        orderbus_testkit::run_cleanup(async move {
            let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                return;
            };
            if let Ok(ch) = conn.create_channel().await {
                let _ = topology.remove(&ch, Duration::from_millis(500)).await;
                let _ = ch.close(200, "done".into()).await;
            }
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

/// What became of one callback request.
#[derive(Debug, Clone)]
enum Outcome {
    /// An HTTP response: status, and the reply's `code`.
    Answered(u16, Option<bool>),
    /// No connection (the listener was gone).
    Refused,
    /// Connected, but no response (the server closed the connection first).
    NoResponse(String),
}

#[derive(Debug, Clone)]
struct Sent {
    /// The callback's `where`: unique per request, so its effect rows can be found.
    location: String,
    /// When it was sent and when its outcome was known, relative to SIGTERM (negative: before).
    at_ms: i64,
    done_ms: i64,
    outcome: Outcome,
}

struct Clock {
    start: Instant,
    sigterm_ms: Mutex<Option<i64>>,
}

impl Clock {
    fn now_ms(&self) -> i64 {
        self.start.elapsed().as_millis() as i64
    }
    /// `t` relative to SIGTERM (read once the test has sent it).
    fn relative(&self, t: i64) -> i64 {
        let sigterm = *self.sigterm_ms.lock().unwrap_or_else(|p| p.into_inner());
        sigterm.map_or(t, |s| t - s)
    }
}

/// SweetTracker callbacks at `HOOK_RATE`/s until `stop`: each a new scan (its own `where`) of
/// one of the `targets` (token, order, waybill).
fn spawn_callbacks(
    base: String,
    targets: Arc<Vec<(String, i64, String)>>,
    clock: Arc<Clock>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<Sent>>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let slots = Arc::new(tokio::sync::Semaphore::new(HOOK_IN_FLIGHT));
        // Every 5 ms, what is due by then: a late tick on a busy machine is caught up, so the
        // average rate holds; but at most 20 requests are owed (while the service is slower
        // than the rate, the in-flight cap holds requests back, and they are dropped, not
        // burst at the closed port later).
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut requests = tokio::task::JoinSet::new();
        let (mut scheduled, mut n) = (0usize, 0usize);
        while !stop.is_cancelled() {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * HOOK_RATE as f64) as usize;
            scheduled = scheduled.max(due.saturating_sub(20));
            while scheduled < due && !stop.is_cancelled() {
                let slot = slots.clone().acquire_owned().await?;
                let (token, order, waybill) = &targets[n % targets.len()];
                let location = format!("hub-{n}");
                let body = json!({
                    "fid": format!("OS02:{order}"), "invoice_no": waybill, "level": "3",
                    "time_trans": "2026-12-01 10:00:00", "where": location, "details": "scan",
                });
                let request = http
                    .post(format!("{base}/delivery/tracking_receive?token={token}"))
                    .json(&body);
                let clock = clock.clone();
                let sent_at = clock.now_ms();
                requests.spawn(async move {
                    let outcome = match request.send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let code = r
                                .json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|v| v["code"].as_bool());
                            Outcome::Answered(status, code)
                        }
                        Err(e) if e.is_connect() => Outcome::Refused,
                        Err(e) => Outcome::NoResponse(innermost(&e)),
                    };
                    drop(slot);
                    (location, sent_at, clock.now_ms(), outcome)
                });
                n += 1;
                scheduled += 1;
            }
        }
        let mut sent = Vec::with_capacity(n);
        while let Some(done) = requests.join_next().await {
            let (location, sent_at, done_at, outcome) = done?;
            sent.push(Sent {
                location,
                at_ms: clock.relative(sent_at),
                done_ms: clock.relative(done_at),
                outcome,
            });
        }
        Ok(sent)
    })
}

/// The innermost cause of a client error ("connection closed before message completed").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `BUS_MESSAGES` `order.erpstatus` 600s at `BUS_RATE`/s, each a new order's shipment,
/// published (confirmed) straight to the service's work queue through the default exchange:
/// on `amq.topic` they would also flood every other running test's `order.erpstatus`
/// consumers (storefronts park unknown orders) and any queue a crashed run left behind.
fn spawn_erp(
    queue: String,
    first_order: i64,
) -> tokio::task::JoinHandle<anyhow::Result<(usize, Duration)>> {
    tokio::spawn(async move {
        let conn = orderbus_testkit::connect_amqp().await?;
        // A few confirm channels, one window in flight on each: the next window is published
        // while earlier ones wait for their confirms.
        let mut publishers = Vec::new();
        for _ in 0..4 {
            publishers.push(Publisher::open(&conn, "erp", Duration::from_secs(30)).await?);
        }
        let mut in_flight: Vec<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> =
            (0..publishers.len()).map(|_| None).collect();
        // Every 20 ms, what is due by then (a slow confirm makes a later window larger, so the
        // average rate holds).
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut sent = 0usize;
        let mut slot = 0usize;
        while sent < BUS_MESSAGES {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * BUS_RATE as f64) as usize)
                .clamp(sent + 1, BUS_MESSAGES);
            let window: Vec<OutgoingMessage> = (sent..due)
                .map(|i| {
                    let order = first_order + i as i64;
                    let body = json!({
                        "uid": 7, "order_code": order, "status": 600,
                        "data": { "express_id": 23, "express_number": format!("W{order}") },
                    });
                    let mut m = OutgoingMessage::new(queue.clone(), body.to_string().into_bytes());
                    m.exchange = String::new();
                    m.message_id = format!("{ERP_ID_PREFIX}{order}");
                    m
                })
                .collect();
            slot = (slot + 1) % publishers.len();
            if let Some(previous) = in_flight[slot].take() {
                previous.await??;
            }
            let publisher = publishers[slot].clone();
            in_flight[slot] = Some(tokio::spawn(async move {
                for r in publisher.publish_many(&window).await {
                    r.context("600 not confirmed")?;
                }
                Ok(())
            }));
            sent = due;
        }
        for previous in in_flight.into_iter().flatten() {
            previous.await??;
        }
        let took = started.elapsed();
        for p in &publishers {
            p.close().await;
        }
        let _ = conn.close(200, "done".into()).await;
        Ok((sent, took))
    })
}

async fn count(db: &TestDb, sql: &'static str, bind: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(db.pool())
        .await?)
}

/// Inbox rows of the `order.erpstatus` work queue: one per message applied.
/// The message ids of this test's 600s: the work queue is also bound to `amq.topic`, so other
/// tests' `order.erpstatus` messages reach it too and must not be counted.
const ERP_ID_PREFIX: &str = "sigterm-600-";

async fn applied(db: &TestDb, queue: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM orderbus_inbox WHERE consumer = $1 AND starts_with(message_id, $2)",
    )
    .bind(queue)
    .bind(ERP_ID_PREFIX)
    .fetch_one(db.pool())
    .await?)
}

async fn pending_outbox(db: &TestDb) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM orderbus_outbox WHERE sent_at IS NULL")
            .fetch_one(db.pool())
            .await?,
    )
}

/// `where` → (event rows, outbox rows) of every SweetTracker event in the database.
async fn effects_by_location(db: &TestDb) -> anyhow::Result<HashMap<String, (i64, i64)>> {
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT location, count(*) FROM trk_events WHERE source = 'sweettracker' GROUP BY location",
    )
    .fetch_all(db.pool())
    .await?;
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT convert_from(body, 'UTF8')::jsonb ->> 'acceptAddress', count(*) FROM orderbus_outbox \
         WHERE routing_key = 'order.updateExpressInfo' GROUP BY 1",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    for (location, n) in events {
        out.entry(location).or_default().0 = n;
    }
    for (location, n) in rows {
        out.entry(location.unwrap_or_default()).or_default().1 = n;
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_bus_and_webhook_load_loses_nothing_and_answers_no_5xx() -> anyhow::Result<()>
{
    let db = TestDb::create().await?;
    let service_name = format!("tracking-{}", unique_suffix());
    let settings = Settings {
        service_name: service_name.clone(),
        ..Settings::default()
    };
    let topology = topology_for(&settings)?;
    let work_queue = topology.work_queue("order.erpstatus");
    let _cleanup = Cleanup(topology);
    // The subscribers of order.updateExpressInfo (storefront, ERP) stand-in: the relay's
    // mandatory publishes are routed, and the test sees them arrive.
    let mut express = TestQueue::bind(&["order.updateExpressInfo"]).await?;
    let http = reqwest::Client::new();

    let mut first = Process::spawn(&service_name, &db, "first")?;
    first.wait_ready(&http).await?;

    // Shipments to send callbacks for, with their tokens (the migrations ran in the process).
    let hook_base = order_code();
    let mut targets = Vec::new();
    for k in 0..HOOK_SHIPMENTS {
        let order = hook_base + k;
        let waybill = format!("{}", 500_000_000_000 + order % 100_000_000_000);
        sqlx::query(
            "INSERT INTO trk_shipments (order_code, uid, kind, order_status, express_id, carrier_code, waybill, waybill_normalised, source) \
             VALUES ($1, 1, 'delivery', 'OS02', 23, '04', $2, $2, 'erp')",
        )
        .bind(order)
        .bind(&waybill)
        .execute(db.pool())
        .await?;
        let mut conn = db.pool().acquire().await?;
        let token =
            CallbackTokens::issue(&mut conn, "sweettracker", Some(&order.to_string())).await?;
        targets.push((token.as_str().to_owned(), order, waybill));
    }
    let hook_orders: HashSet<i64> = targets.iter().map(|t| t.1).collect();
    let bus_base = hook_base + HOOK_SHIPMENTS + 1;

    // Both loads; SIGTERM once both are visibly being applied.
    let clock = Arc::new(Clock {
        start: Instant::now(),
        sigterm_ms: Mutex::new(None),
    });
    let stop_hooks = CancellationToken::new();
    let hooks = spawn_callbacks(
        first.base.clone(),
        Arc::new(targets),
        clock.clone(),
        stop_hooks.clone(),
    );
    let erp = spawn_erp(work_queue.clone(), bus_base);
    eventually("both loads applied", || async {
        let bus = applied(&db, &work_queue).await.ok()?;
        let events = count(
            &db,
            "SELECT count(*) FROM trk_events WHERE source = $1",
            "sweettracker",
        )
        .await
        .ok()?;
        (bus >= 1000 && events >= 200).then_some(())
    })
    .await?;
    *clock.sigterm_ms.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock.now_ms());
    let drain = first.terminate().await?;
    let exited_ms = clock.relative(clock.now_ms());
    // A little more load against the closed port: those requests are refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_hooks.cancel();
    let sent = hooks.await??;
    let first_log = first.log_text();
    let bus_by_first = applied(&db, &work_queue).await?;
    let left_pending = pending_outbox(&db).await?;
    let (published, publish_time) = erp.await??;
    let effects_after_first = effects_by_location(&db).await?;

    // A second process (same queues, same database) finishes the rest.
    let mut second = Process::spawn(&service_name, &db, "second")?;
    second.wait_ready(&http).await?;
    eventually("every 600 applied and the outbox drained", || async {
        let n = applied(&db, &work_queue).await.ok()?;
        let pending = pending_outbox(&db).await.ok()?;
        (n >= BUS_MESSAGES as i64 && pending == 0).then_some(())
    })
    .await?;
    second.terminate().await?;

    // The numbers first, so a failing assertion below still shows them.
    let mut answered = 0;
    let mut accepted = Vec::new();
    let mut server_errors = Vec::new();
    let mut other_answers = Vec::new();
    let mut refused = 0;
    let mut no_response: HashMap<&str, usize> = HashMap::new();
    let (mut after_sigterm, mut after_sigterm_accepted, mut after_exit_answered) = (0, 0, 0);
    let (mut in_flight, mut in_flight_answered) = (0, 0);
    for s in &sent {
        if s.at_ms >= 0 {
            after_sigterm += 1;
        }
        if s.at_ms < 0 && s.done_ms >= 0 {
            in_flight += 1;
            if matches!(s.outcome, Outcome::Answered(..)) {
                in_flight_answered += 1;
            }
        }
        match &s.outcome {
            Outcome::Answered(status, code) => {
                answered += 1;
                if s.at_ms >= 0 {
                    after_sigterm_accepted += 1;
                }
                if s.at_ms > exited_ms {
                    after_exit_answered += 1;
                }
                if *status >= 500 {
                    server_errors.push(s.clone());
                } else if *status == 200 && *code == Some(true) {
                    accepted.push(s);
                } else {
                    other_answers.push(s.clone());
                }
            }
            Outcome::Refused => refused += 1,
            Outcome::NoResponse(why) => *no_response.entry(why.as_str()).or_default() += 1,
        }
    }
    let first_sent = sent.iter().map(|s| s.at_ms).min().unwrap_or(0);
    let hook_rate = (sent.len() - after_sigterm) as f64 * 1000.0 / (-first_sent).max(1) as f64;
    let effects = effects_by_location(&db).await?;
    let unanswered_applied = sent
        .iter()
        .filter(|s| !matches!(s.outcome, Outcome::Answered(..)))
        .filter(|s| effects.get(&s.location).is_some_and(|e| e.0 > 0))
        .count();
    println!(
        "R12/HTTP: drain {drain:?} (grace {GRACE_SECS} s); callbacks sent {} ({hook_rate:.0}/s; {after_sigterm} after \
         SIGTERM, the process exited {exited_ms} ms after it): answered {answered} ({} accepted, \
         {after_sigterm_accepted} of them sent after SIGTERM; {in_flight_answered} of the {in_flight} \
         in flight at SIGTERM), refused {refused}, no response \
         {no_response:?} (of the unanswered, {unanswered_applied} applied anyway); 5xx {}; \
         600s published {published} in {publish_time:?} ({:.0}/s), applied by the first process \
         {bus_by_first}; outbox rows left pending by the first process {left_pending}",
        sent.len(),
        accepted.len(),
        server_errors.len(),
        published as f64 / publish_time.as_secs_f64().max(0.001),
    );

    assert!(
        drain <= Duration::from_secs(GRACE_SECS),
        "exited {drain:?} after SIGTERM; R12 allows {GRACE_SECS} s"
    );
    assert!(
        server_errors.is_empty(),
        "5xx answers to accepted callbacks: {server_errors:?}\nfirst process log:\n{first_log}"
    );
    assert!(
        other_answers.is_empty(),
        "answers other than 200 code:true: {other_answers:?}"
    );
    assert_eq!(
        after_exit_answered, 0,
        "requests sent after the exit were answered"
    );
    assert!(
        !accepted.is_empty(),
        "no callback was accepted: the load never reached the service"
    );
    // Every accepted callback: its event and its outbox row exactly once, already when the
    // first process stopped (it answered after the commit).
    for s in &accepted {
        assert_eq!(
            effects_after_first.get(&s.location).copied(),
            Some((1, 1)),
            "effects of accepted callback {} when the first process had stopped",
            s.location
        );
        assert_eq!(
            effects.get(&s.location).copied(),
            Some((1, 1)),
            "effects of accepted callback {} at the end",
            s.location
        );
    }
    // Nothing doubled anywhere, and no effect from a request that was never sent.
    let locations: HashSet<&str> = sent.iter().map(|s| s.location.as_str()).collect();
    for (location, (events, rows)) in &effects {
        assert!(
            *events <= 1 && *rows == *events,
            "{location}: {events} events, {rows} outbox rows"
        );
        assert!(
            locations.contains(location.as_str()),
            "an effect nobody sent: {location}"
        );
    }

    // The bus: every 600 applied exactly once (one inbox row and one shipment per message).
    assert_eq!(published, BUS_MESSAGES);
    assert_eq!(applied(&db, &work_queue).await?, BUS_MESSAGES as i64);
    let (shipments, orders): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT order_code) FROM trk_shipments \
         WHERE order_code >= $1 AND order_code < $2",
    )
    .bind(bus_base)
    .bind(bus_base + BUS_MESSAGES as i64)
    .fetch_one(db.pool())
    .await?;
    assert_eq!(
        (shipments, orders),
        (BUS_MESSAGES as i64, BUS_MESSAGES as i64),
        "one shipment per 600"
    );

    // The outbox: drained, and every row reached the broker (at least once; the outbox is
    // at-least-once, so a repeat is allowed).
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT convert_from(body, 'UTF8')::jsonb ->> 'uniqueKey' FROM orderbus_outbox \
         WHERE routing_key = 'order.updateExpressInfo'",
    )
    .fetch_all(db.pool())
    .await?;
    let mut missing: HashSet<String> = keys.into_iter().collect();
    let total = missing.len();
    while !missing.is_empty() {
        let m = express
            .recv_where(Duration::from_secs(30), |m| {
                m.json()["orderCode"]
                    .as_i64()
                    .is_some_and(|c| hook_orders.contains(&c))
            })
            .await
            .map_err(|e| {
                anyhow!(
                    "order.updateExpressInfo: {} of {total} not seen: {e}",
                    missing.len()
                )
            })?;
        if let Some(key) = m.json()["uniqueKey"].as_str() {
            missing.remove(key);
        }
    }
    Ok(())
}
