//! The double-capture race: the ReturnURL redirect, the BackendURL push resent five times and
//! the sweep all learn about one payment at once, on two replicas. Exactly one `order.payment`.

use std::time::Duration;

use futures::future::join_all;

use crate::common::{sim_config, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn notifications_and_sweeps_on_two_replicas_publish_one_order_payment_each(
) -> anyhow::Result<()> {
    let h = Harness::start_with(2, sim_config(), |s| {
        s.deadlines.auto_cancel_after = Duration::from_secs(3 * 86400);
    })
    .await?;
    let sweeps = [h.reconciler(0)?, h.reconciler(1)?];
    for round in 0..6 {
        let code = h.submit("799.00").await?;
        let method = if round % 2 == 0 { "card" } else { "atm" };
        let (status, body) = h.choose(code, method).await?;
        assert_eq!(status, 201, "{body}");
        let no = Harness::order_no(&body)?;
        // Paid at the bank; its own pushes suppressed so the test fires them all at once.
        h.bank.sim.drop_notifications_for(&no, true);
        assert!(h.bank.sim.pay_now(&no));
        let token = h.pay_token(&no)?;
        let mut calls = Vec::new();
        for i in 0..5 {
            // The same PayToken five times to each replica (the bank's retries), a ReturnURL
            // post to each.
            calls.push(tokio::spawn({
                let (base, token) = (h.replicas[i % 2].base.clone(), token.clone());
                let http = h.http.clone();
                async move {
                    http.post(format!("{base}/sinopac/backend"))
                        .json(&serde_json::json!({"ShopNo": "NA0249_001", "PayToken": token}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                }
            }));
        }
        for i in 0..2 {
            calls.push(tokio::spawn({
                let (base, token) = (h.replicas[i].base.clone(), token.clone());
                let http = h.http.clone();
                async move {
                    http.post(format!("{base}/sinopac/return"))
                        .form(&[("ShopNo", "NA0249_001"), ("PayToken", token.as_str())])
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                }
            }));
        }
        let sweep_runs = join_all(sweeps.iter().map(|s| s.sweep_once(chrono::Utc::now())));
        let (results, sweep_results) = tokio::join!(join_all(calls), sweep_runs);
        for r in results {
            let status = r??;
            // 200 (applied or replayed), 303 (ReturnURL redirect), 409 (a duplicate that
            // outwaited the first: the bank retries).
            assert!([200, 303, 409].contains(&status), "status {status}");
        }
        for r in sweep_results {
            r?;
        }
        // Settle any stragglers (e.g. a 409'd duplicate) the way the bank would: once more.
        assert_eq!(h.notify(0, &token, false).await?, 200);
        let p = h.wait_payment(code, |p| p["status"] == "paid").await?;
        assert_eq!(
            h.payments_published(code).await?,
            1,
            "round {round}: exactly one order.payment; payment {p}"
        );
        let settlements = p["settlements"].as_array().map(Vec::len);
        assert_eq!(settlements, Some(1), "{p}");
        let published: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payment_settlements WHERE order_code = $1 AND published",
        )
        .bind(code)
        .fetch_one(h.db.pool())
        .await?;
        assert_eq!(published, 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_refuses_a_second_published_settlement() -> anyhow::Result<()> {
    // The last line of defence, independent of the code path: the partial unique index.
    let h = Harness::start(1).await?;
    let code = h.submit("5.00").await?;
    let pool = h.db.pool();
    for n in 1..=2 {
        sqlx::query(
            "INSERT INTO payment_attempts (order_code, order_no, pay_type, amount_cents, expires_at, bank_reply) \
             VALUES ($1, $2, 'C', 500, now(), '{}')",
        )
        .bind(code)
        .bind(format!("{code}-{n}"))
        .execute(pool)
        .await?;
    }
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM payment_attempts WHERE order_code = $1 ORDER BY id")
            .bind(code)
            .fetch_all(pool)
            .await?;
    let insert = |id: i64| {
        sqlx::query(
            "INSERT INTO payment_settlements (attempt_id, order_code, via, outcome, published, ts_no, bank_answer) \
             VALUES ($1, $2, 'sweep', 'paid', true, 'T', '{}')",
        )
        .bind(id)
        .bind(code)
    };
    insert(ids[0]).execute(pool).await?;
    let second = insert(ids[1]).execute(pool).await;
    let err = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("payment_settlements_one_publish"), "{err}");
    Ok(())
}
