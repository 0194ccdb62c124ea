//! The reconciliation sweep against the simulator: lost notifications, a window of more than
//! 300 orders, the retry cap, expiry.

use std::time::Duration;

use chrono::{Duration as Cd, Utc};
use orderbus_payments::ids::OrderCode;
use orderbus_payments::store;
use orderbus_sinopac::sim::{Outcome, SeedOrder};
use orderbus_sinopac::types::{Amount, PayType};
use serde_json::json;

use crate::common::{sim_config, Harness};

fn three_days(s: &mut orderbus_payments::Settings) {
    s.deadlines.auto_cancel_after = Duration::from_secs(3 * 86400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_notifications_are_settled_by_the_sweep() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let mut orders = Vec::new();
    for method in ["atm", "card", "atm"] {
        let code = h.submit("42.00").await?;
        let (_, body) = h.choose(code, method).await?;
        let no = Harness::order_no(&body)?;
        h.bank.sim.drop_notifications_for(&no, true);
        assert!(h.bank.sim.pay_now(&no));
        orders.push(code);
    }
    // One more that nobody paid: looked at, rescheduled.
    let unpaid = h.submit("42.00").await?;
    h.choose(unpaid, "atm").await?;
    let report = h.reconciler(0)?.sweep_once(Utc::now()).await?;
    assert_eq!(report.settled, 3, "{report:?}");
    assert_eq!(report.rescheduled, 1, "{report:?}");
    assert_eq!(report.queries, 4, "few payments are queried by OrderNo");
    for code in orders {
        let (_, p) = h.get(code).await?;
        assert_eq!(p["status"], "paid");
        assert_eq!(p["settled_via"], "sweep");
        assert!(p["settlements"][0]["lag_ms"].is_i64());
        assert_eq!(h.payments_published(code).await?, 1);
    }
    let (_, p) = h.get(unpaid).await?;
    assert_eq!(p["status"], "awaiting_payment");
    assert_eq!(p["sweep_attempts"], 1);
    // A second sweep right away does nothing: the unpaid one backs off, the others are paid.
    let report = h.reconciler(0)?.sweep_once(Utc::now()).await?;
    assert_eq!(report.checked, 0, "{report:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_of_more_than_300_orders_is_reconciled_completely() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let pool = h.db.pool();
    let now = Utc::now();
    let total = 350;
    let mut codes = Vec::new();
    for i in 0..total {
        let code = h.new_code();
        // Spread over the last 6 hours; every 11th stays unpaid.
        let created = now - Cd::minutes(360) + Cd::seconds(i64::from(i) * 60);
        let local = created.naive_utc() + Cd::hours(8);
        let no = format!("{code}-1");
        let paid = i % 11 != 0;
        h.bank.sim.seed_order(SeedOrder {
            shop_no: None,
            order_no: no.clone(),
            amount: Amount::from_hundredths(2500)?,
            pay_type: PayType::Atm,
            created_at: local,
            paid_at: paid.then_some(local + Cd::minutes(5)),
        })?;
        let mut tx = pool.begin().await?;
        store::insert_payment(&mut tx, OrderCode(code), 8041518, 2500, created).await?;
        store::insert_attempt(
            &mut tx,
            &store::NewAttempt {
                order_code: OrderCode(code),
                order_no: &no,
                pay_type: "A",
                amount_cents: 2500,
                ts_no: "T",
                bank_code: Some("807"),
                atm_account: Some("1"),
                web_atm_url: None,
                card_pay_url: None,
                expires_at: now + Cd::days(2),
                expire_date: None,
                bank_reply: &json!({}),
            },
            created,
        )
        .await?;
        tx.commit().await?;
        // The attempt was made when the bank says (the sweep's window starts there).
        sqlx::query("UPDATE payment_attempts SET created_at = $2 WHERE order_no = $1")
            .bind(&no)
            .bind(created)
            .execute(pool)
            .await?;
        codes.push((code, paid));
    }
    let report = h.reconciler(0)?.sweep_once(now).await?;
    let paid_count = codes.iter().filter(|(_, p)| *p).count();
    assert!(paid_count > 300);
    assert_eq!(report.checked, total as usize);
    assert_eq!(report.settled, paid_count, "{report:?}");
    assert_eq!(report.rescheduled, total as usize - paid_count);
    let published: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payment_settlements WHERE via = 'sweep' AND published",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(published, paid_count as i64);
    for (code, paid) in codes.iter().step_by(37) {
        let (_, p) = h.get(*code).await?;
        assert_eq!(p["status"], if *paid { "paid" } else { "awaiting_payment" });
    }
    // More than 300 paid orders in one reconciliation: no single OrderQuery reply can hold
    // them (row cap 300), so the window was split until every part was under the cap.
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_retry_cap_escalates_and_stops_polling() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), |s| {
        three_days(s);
        s.sweep.max_attempts = 3;
        s.sweep.backoff_base = Duration::from_secs(60);
        s.sweep.backoff_max = Duration::from_secs(600);
    })
    .await?;
    let code = h.submit("9.00").await?;
    let (_, body) = h.choose(code, "atm").await?;
    let no = Harness::order_no(&body)?;
    h.bank.sim.set_outcome(&no, Outcome::Never);
    let sweep = h.reconciler(0)?;
    let t0 = Utc::now();
    let mut escalated = 0;
    for hours in [0, 1, 2] {
        let r = sweep.sweep_once(t0 + Cd::hours(hours)).await?;
        assert_eq!(r.checked, 1, "{r:?}");
        escalated += r.escalated;
    }
    assert_eq!(escalated, 1);
    let (_, p) = h.get(code).await?;
    assert_eq!(p["flag"], "stuck");
    assert_eq!(p["sweep_attempts"], 3);
    assert!(p["escalated_at"].is_string());
    // Not polled again, however late.
    let r = sweep.sweep_once(t0 + Cd::hours(20)).await?;
    assert_eq!(r.checked, 0);
    // A notification still settles it.
    assert!(h.bank.sim.pay_now(&no));
    let p = h.wait_payment(code, |p| p["status"] == "paid").await?;
    assert_eq!(p["settled_via"], "backend_url");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_atm_account_past_its_expiry_becomes_expired() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("20.00").await?;
    let (_, body) = h.choose(code, "atm").await?;
    let no = Harness::order_no(&body)?;
    h.bank.sim.set_outcome(&no, Outcome::Never);
    let expires: chrono::DateTime<Utc> =
        serde_json::from_value(body["current"]["expires_at"].clone())?;
    let sweep = h.reconciler(0)?;
    let r = sweep.sweep_once(Utc::now()).await?;
    assert_eq!(r.rescheduled, 1, "{r:?}");
    let r = sweep.sweep_once(expires + Cd::minutes(1)).await?;
    assert_eq!(r.expired, 1, "{r:?}");
    let (_, p) = h.get(code).await?;
    assert_eq!(p["status"], "expired");
    assert_eq!(p["attempts"][0]["state"], "expired");
    Ok(())
}
