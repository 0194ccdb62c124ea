//! The 12:00 job: two replicas on one database and one manual clock register each shipment
//! once per day; every e_code is handled as seed 000 says, with its log lines verbatim.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_register_each_shipment_once_a_day_and_handle_every_e_code(
) -> anyhow::Result<()> {
    let mut w = World::new(fast_sim()).await?;
    for replica in ["replica-a", "replica-b"] {
        let mut s = w.settings(replica);
        // 99 → "98": a code SweetTracker does not support (e_code 04).
        s.carriers = "23=04,99=98".parse()?;
        w.start(s).await?;
    }
    w.sim.set_silence(true);
    let (ok, bad_num, bad_carrier) = (order_code(), order_code(), order_code());
    let num = waybill();
    // The waybill as the ERP gives it, with a space and dashes: registered normalised.
    let spaced = format!("{} {}-{}", &num[..4], &num[4..8], &num[8..]);
    w.publish_600(ok, 8041518, 23, &spaced).await?;
    w.publish_600(bad_num, 8041518, 23, "ABC-12345678").await?;
    w.publish_600(bad_carrier, 8041518, 99, &waybill()).await?;
    for code in [ok, bad_num, bad_carrier] {
        w.shipment_where(code, "shipment recorded", |s, _| s == "OS02")
            .await?;
    }

    // Day 1: both replicas wake at noon; one registers.
    let day1 = seoul_noon(2)?;
    w.run_slot(day1, 2).await?;
    for code in [ok, bad_num, bad_carrier] {
        assert_eq!(
            w.add_invoice_calls(code).await?,
            1,
            "order {code} registered once on day 1"
        );
    }
    let reg = w
        .sim
        .registration(&num, "04")
        .ok_or_else(|| anyhow::anyhow!("not registered"))?;
    assert_eq!(reg.fid, format!("OS02:{ok}"));
    assert!(
        reg.callback_url
            .contains("/delivery/tracking_receive?token="),
        "{}",
        reg.callback_url
    );
    let success = format!("[Scheduler] DeliveryTracking Request Success: num={num},fid=OS02:{ok}");
    assert_eq!(log_lines(&success).len(), 1, "one success line on day 1");
    assert!(log_lines(&success).iter().all(|l| l.contains("DEBUG")));
    let fail_02 = format!("[Scheduler] DeliveryTracking Request Fail: num=ABC12345678,fid=OS02:{bad_num},e_code=02,e_message=송장번호 규칙에 어긋납니다.");
    assert_eq!(
        log_lines(&fail_02).len(),
        1,
        "{:?}",
        log_lines(&format!("fid=OS02:{bad_num}"))
    );
    assert!(log_lines(&fail_02).iter().all(|l| l.contains("ERROR")));
    let fail_04 = format!("fid=OS02:{bad_carrier},e_code=04,e_message=");
    assert_eq!(log_lines(&fail_04).len(), 1);

    // Day 2: SweetTracker has a system error (99) for everything: logged, not retried in a loop.
    w.sim.set_system_error(true);
    w.run_slot(seoul_noon(3)?, 2).await?;
    for code in [ok, bad_num, bad_carrier] {
        assert_eq!(
            w.add_invoice_calls(code).await?,
            2,
            "order {code} tried once on day 2"
        );
    }
    let fail_99 =
        format!("[Scheduler] DeliveryTracking Request Fail: num={num},fid=OS02:{ok},e_code=99,");
    assert_eq!(log_lines(&fail_99).len(), 1);

    // Day 3: the 99 is retried at the next run; SweetTracker already has it (03) = success.
    w.sim.set_system_error(false);
    w.run_slot(seoul_noon(4)?, 2).await?;
    assert_eq!(w.add_invoice_calls(ok).await?, 3);
    assert_eq!(log_lines(&success).len(), 2, "03 counts as success");
    let (_, v) = w
        .get(&w.instances[0].base, &format!("/v1/orders/{ok}/shipments"))
        .await?;
    assert_eq!(
        v["shipments"][0]["registration_error"],
        serde_json::Value::Null,
        "{v}"
    );
    let (_, v) = w
        .get(
            &w.instances[0].base,
            &format!("/v1/orders/{bad_num}/shipments"),
        )
        .await?;
    assert!(
        v["shipments"][0]["registration_error"]
            .as_str()
            .unwrap_or("")
            .starts_with("e_code 02"),
        "{v}"
    );

    // Every slot ran exactly once across both replicas.
    let runs =
        orderbus_scheduler::runs_of(w.db.pool(), orderbus_tracking::registration::JOB_NAME).await?;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|r| r.status == "done" && r.attempt == 1));
    w.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_parameter_is_logged_with_e_code_01() -> anyhow::Result<()> {
    let mut w = World::new(fast_sim()).await?;
    let mut s = w.settings("only");
    s.sweettracker.tier = String::new();
    w.start(s).await?;
    let (code, num) = (order_code(), waybill());
    w.publish_600(code, 1, 23, &num).await?;
    w.shipment_where(code, "shipment", |s, _| s == "OS02")
        .await?;
    w.run_slot(seoul_noon(2)?, 1).await?;
    let line = format!(
        "[Scheduler] DeliveryTracking Request Fail: num={num},fid=OS02:{code},e_code=01,e_message="
    );
    assert_eq!(log_lines(&line).len(), 1);
    assert!(w.sim.registration(&num, "04").is_none());
    w.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_shipment_is_stale_and_registered_again_the_next_day() -> anyhow::Result<()> {
    let mut w = World::new(fast_sim()).await?;
    let base = w.start(w.settings("only")).await?;
    let (silent, num) = (order_code(), waybill());
    w.publish_600(silent, 1, 23, &num).await?;
    w.shipment_where(silent, "shipment", |s, _| s == "OS02")
        .await?;
    // Registration succeeds, and then nothing ever comes back.
    w.sim.set_silence(true);
    w.run_slot(seoul_noon(2)?, 1).await?;
    assert!(w
        .sim
        .registration(&num, "04")
        .is_some_and(|r| r.planned_events == 0));
    // The next day's job registers it again (SweetTracker answers 03): the polling fallback.
    w.run_slot(seoul_noon(3)?, 1).await?;
    assert_eq!(
        w.add_invoice_calls(silent).await?,
        2,
        "registered again the next day"
    );
    let (status, v) = w.get(&base, "/v1/shipments/stale").await?;
    assert_eq!(status, 200, "{v}");
    let stale: Vec<i64> = v["shipments"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["order_code"].as_i64()).collect())
        .unwrap_or_default();
    assert!(stale.contains(&silent), "{v}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("tracking_stale_shipments"),
        "the stale gauge is exported"
    );
    w.stop_all().await
}
