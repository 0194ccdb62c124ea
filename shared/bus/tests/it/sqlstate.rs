//! Database errors raised by handlers (and by the commit after them) are classified by SQLSTATE:
//! data exceptions (22) and integrity violations (23) are parked on the first attempt with a
//! reason naming the SQLSTATE and constraint; transient ones go through the delay tiers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderbus_bus::{
    Delivery, Handler, HandlerError, HandlerFuture, HEADER_PARK_ATTEMPTS, HEADER_PARK_REASON,
};
use orderbus_testkit::{amqp_url, ErpPublisher, TestDb};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::common::*;

/// What a [`LedgerWriter`] message asks for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Entry {
    key: String,
    note: String,
    amount: String,
    at: String,
    /// Raise this SQLSTATE (a transient one) while `attempt <= fail_times`.
    #[serde(default)]
    raise: Option<String>,
    #[serde(default)]
    fail_times: u32,
    /// Insert the row twice (into the deferred-unique table: the clash shows at commit).
    #[serde(default)]
    twice_deferred: bool,
}

fn entry(key: &str) -> Entry {
    Entry {
        key: key.into(),
        note: "ok".into(),
        amount: "12.50".into(),
        at: "2026-12-01T10:00:00Z".into(),
        ..Entry::default()
    }
}

async fn create_ledger(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE ledger (key TEXT PRIMARY KEY, note TEXT NOT NULL, amount NUMERIC(14,2) NOT NULL, \
         at TIMESTAMPTZ NOT NULL)",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "CREATE TABLE ledger_deferred (key TEXT NOT NULL, \
         CONSTRAINT ledger_deferred_key UNIQUE (key) DEFERRABLE INITIALLY DEFERRED)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Writes one ledger row per message with values taken from the message, as a handler storing
/// an ERP's fields does.
#[derive(Clone, Default)]
struct LedgerWriter {
    calls: Arc<AtomicUsize>,
}

impl Handler for LedgerWriter {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            // Plain serde_json, not `Delivery::json` (which refuses U+0000 itself): the NUL case
            // must reach PostgreSQL to test its SQLSTATE.
            let e: Entry = serde_json::from_slice(&d.body)
                .map_err(|e| HandlerError::park("undecodable JSON").with_source(e))?;
            if let Some(code) = e.raise.as_deref().filter(|_| d.attempt <= e.fail_times) {
                raise(conn, code).await?;
            }
            if e.twice_deferred {
                for _ in 0..2 {
                    sqlx::query("INSERT INTO ledger_deferred (key) VALUES ($1)")
                        .bind(&e.key)
                        .execute(&mut *conn)
                        .await?;
                }
            } else {
                insert_entry(conn, &e).await?;
            }
            sqlx::query("INSERT INTO effects (key, attempt, message_id) VALUES ($1, $2, $3)")
                .bind(&e.key)
                .bind(d.attempt as i32)
                .bind(&d.message_id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }
}

async fn insert_entry(conn: &mut PgConnection, e: &Entry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger (key, note, amount, at) VALUES ($1, $2, $3::numeric, $4::timestamptz)",
    )
    .bind(&e.key)
    .bind(&e.note)
    .bind(&e.amount)
    .bind(&e.at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Raises a real PostgreSQL error with SQLSTATE `code`.
async fn raise(conn: &mut PgConnection, code: &str) -> Result<(), sqlx::Error> {
    // The code is one of the test's constants; PL/pgSQL needs it as a literal.
    let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END $$");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await?;
    Ok(())
}

/// NUL in text, numeric overflow, invalid text representation, datetime out of range, a unique
/// clash and a deferred unique clash at commit: each parked on its first attempt, with its
/// SQLSTATE (and constraint) in the reason, none retried; the good message is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_database_errors_are_parked_at_once() -> TestResult {
    let world = World::new().await?;
    create_ledger(world.pool()).await?;
    let key = world.key("ledger");
    let handler = LedgerWriter::default();
    let topo = topology(&world, &key, |s| s, Arc::new(handler.clone()));
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let cases: Vec<(Entry, &str)> = vec![
        (
            Entry {
                note: "nul \u{0} inside".into(),
                ..entry("nul")
            },
            "22021",
        ),
        (
            Entry {
                amount: "123456789012345.00".into(),
                ..entry("overflow")
            },
            "22003",
        ),
        (
            Entry {
                amount: "twelve".into(),
                ..entry("text")
            },
            "22P02",
        ),
        (
            Entry {
                at: "294277-01-01T00:00:00Z".into(),
                ..entry("date")
            },
            "22008",
        ),
        (entry("good"), "23505"),
        (
            Entry {
                twice_deferred: true,
                ..entry("deferred")
            },
            "23505",
        ),
    ];
    let erp = ErpPublisher::connect().await?;
    for (e, _) in &cases {
        erp.publish(&key, &serde_json::to_vec(e)?).await?;
    }
    // The unique clash: the same key again, as another message.
    erp.publish(
        &key,
        &serde_json::to_vec(&Entry {
            note: "again".into(),
            ..entry("good")
        })?,
    )
    .await?;
    wait_until(Duration::from_secs(15), || async {
        (queue_depth(&parking).await.ok()? >= 6).then_some(())
    })
    .await
    .ok_or("not everything was parked")?;
    running.stop().await;

    assert_eq!(world.effects().await?, vec![("good".to_owned(), 1)]);
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        7,
        "no message was retried"
    );
    let parked = take_all(&parking).await?;
    assert_eq!(parked.len(), 6);
    let mut expected: Vec<(&str, &str)> = vec![
        ("nul", "22021"),
        ("overflow", "22003"),
        ("text", "22P02"),
        ("date", "22008"),
        ("deferred", "23505"),
        ("good", "23505"),
    ];
    for (body, props) in &parked {
        let e: Entry = serde_json::from_slice(body)?;
        let reason = header(props, HEADER_PARK_REASON).unwrap_or_default();
        assert_eq!(
            header(props, HEADER_PARK_ATTEMPTS).as_deref(),
            Some("1"),
            "{reason}"
        );
        let i = expected
            .iter()
            .position(|(k, _)| *k == e.key)
            .ok_or_else(|| format!("unexpected parked message {}: {reason}", e.key))?;
        let (k, code) = expected.remove(i);
        assert!(
            reason.contains(&format!("SQLSTATE {code}")),
            "{k}: {reason}"
        );
        match k {
            "good" => assert!(
                reason.contains("ledger_pkey"),
                "names the constraint: {reason}"
            ),
            "deferred" => {
                assert!(reason.starts_with("commit: "), "{reason}");
                assert!(reason.contains("ledger_deferred_key"), "{reason}");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Serialization failure (40001), too many connections (53300) and admin shutdown (57P01) are
/// transient: retried through the tiers and applied on the third attempt, nothing parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_database_errors_go_through_the_tiers() -> TestResult {
    let world = World::new().await?;
    create_ledger(world.pool()).await?;
    let key = world.key("ledger");
    let handler = LedgerWriter::default();
    let topo = topology(&world, &key, |s| s, Arc::new(handler.clone()));
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;
    let erp = ErpPublisher::connect().await?;
    for code in ["40001", "53300", "57P01"] {
        let e = Entry {
            raise: Some(code.into()),
            fail_times: 2,
            ..entry(code)
        };
        erp.publish(&key, &serde_json::to_vec(&e)?).await?;
    }
    world.wait_effects(3, Duration::from_secs(20)).await?;
    running.stop().await;
    let mut effects = world.effects().await?;
    effects.sort();
    assert_eq!(
        effects,
        vec![
            ("40001".to_owned(), 3),
            ("53300".to_owned(), 3),
            ("57P01".to_owned(), 3)
        ]
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 9);
    assert_eq!(queue_depth(&parking).await?, 0);
    Ok(())
}

/// A value from a message that PostgreSQL refuses as data, with the SQLSTATE it raises.
#[derive(Clone, Debug)]
enum BadValue {
    /// Text containing NUL: 22021.
    Nul(String),
    /// More than 12 integer digits for `numeric(14,2)`: 22003.
    Overflow(String),
    /// Not a number at all: 22P02.
    NotANumber(String),
    /// A year beyond PostgreSQL's timestamp range: 22008 (22007 for years it cannot parse).
    FarFuture(String),
}

impl BadValue {
    /// The SQLSTATE, or the prefix of the SQLSTATEs, PostgreSQL raises for it.
    fn sqlstate(&self) -> &'static str {
        match self {
            BadValue::Nul(_) => "22021",
            BadValue::Overflow(_) => "22003",
            BadValue::NotANumber(_) => "22P02",
            BadValue::FarFuture(_) => "2200",
        }
    }

    fn entry(&self) -> Entry {
        let base = entry("generated");
        match self.clone() {
            BadValue::Nul(note) => Entry { note, ..base },
            BadValue::Overflow(amount) | BadValue::NotANumber(amount) => Entry { amount, ..base },
            BadValue::FarFuture(at) => Entry { at, ..base },
        }
    }
}

fn bad_values() -> impl Strategy<Value = BadValue> {
    prop_oneof![
        ("[a-z ]{0,20}", "[a-z ]{0,20}").prop_map(|(a, b)| BadValue::Nul(format!("{a}\u{0}{b}"))),
        (1u64..=9, 12usize..30, 0u32..100).prop_map(|(lead, zeros, cents)| BadValue::Overflow(
            format!("{lead}{}.{cents:02}", "0".repeat(zeros))
        )),
        "[a-zA-Z_][a-zA-Z0-9_ ]{0,15}"
            .prop_filter("not a numeric literal", |s| {
                let t = s.trim().to_ascii_lowercase();
                !matches!(t.as_str(), "nan" | "infinity" | "inf" | "-infinity")
            })
            .prop_map(BadValue::NotANumber),
        (294_277u32..999_999, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| BadValue::FarFuture(format!("{y}-{m:02}-{d:02}T00:00:00Z"))),
    ]
}

/// Over generated bad values: each fails on the real database with its data-exception SQLSTATE
/// and `HandlerError::from` parks it with that SQLSTATE in the reason.
#[test]
fn generated_data_exceptions_are_parked() -> TestResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let db = rt.block_on(TestDb::create())?;
    rt.block_on(create_ledger(db.pool()))?;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let result = runner.run(&bad_values(), |bad| {
        let outcome: Result<(), HandlerError> = rt.block_on(async {
            let mut tx = db.pool().begin().await?;
            insert_entry(&mut tx, &bad.entry()).await?;
            tx.rollback().await?;
            Ok(())
        });
        let err = match outcome {
            Ok(()) => return Err(TestCaseError::fail(format!("{bad:?} was accepted"))),
            Err(e) => e,
        };
        prop_assert!(err.is_park(), "{bad:?}: {err}");
        let reason = err.describe();
        prop_assert!(
            reason.contains(&format!("SQLSTATE {}", bad.sqlstate())),
            "{bad:?}: {reason}"
        );
        Ok(())
    });
    drop(db);
    drop(rt);
    result.map_err(|e| e.to_string().into())
}
