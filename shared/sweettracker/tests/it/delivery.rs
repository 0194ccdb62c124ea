//! Callbacks pushed by the simulator to a receiver built with the crate's decoder.

use crate::common::*;
use orderbus_sweettracker::{AddInvoice, CallbackType, Carrier, Client, Faults, Level, SimConfig};

async fn register(base: &str, num: &str, fid: &str, cb_url: &str, ty: CallbackType) {
    Client::new(client_config(base))
        .unwrap()
        .add_invoice(&AddInvoice {
            num: num.into(),
            carrier: Carrier::CjLogistics,
            fid: fid.into(),
            callback_url: cb_url.into(),
            callback_type: ty,
        })
        .await
        .unwrap();
}

fn levels(rs: &[Received]) -> Vec<i64> {
    rs.iter().map(|r| r.callback.level.as_i64()).collect()
}

async fn run(
    config: SimConfig,
    ty: CallbackType,
    num: &str,
) -> (Vec<Received>, orderbus_sweettracker::sim::Registration) {
    let (sim, base) = start_sim(config).await;
    let (rx, cb_url) = start_receiver(0).await;
    register(&base, num, &format!("OS02:{num}"), &cb_url, ty).await;
    wait_finished(&sim, num, "04").await;
    let reg = sim.registration(num, "04").unwrap();
    (rx.for_fid(&format!("OS02:{num}")), reg)
}

fn assert_full_progression(rs: &[Received], num: &str) {
    assert_eq!(levels(rs), [1, 2, 3, 3, 4, 5, 6]);
    let mut last = None;
    for r in rs {
        let cb = &r.callback;
        assert_eq!(cb.invoice_no, num);
        assert_eq!(cb.fid, format!("OS02:{num}"));
        assert_eq!(cb.carrier_code(), Some("04"));
        assert!(cb.location.is_some() && cb.details.is_some() && cb.recv_name.is_some());
        let tt = cb.time_trans_parsed().expect("time_trans format");
        let ts = cb.time_sweet_parsed().expect("time_sweet format");
        assert!(ts >= tt, "time_sweet >= time_trans");
        if let Some(prev) = last {
            assert!(tt > prev, "time_trans increases");
        }
        last = Some(tt);
    }
    assert_eq!(rs.last().unwrap().callback.level, Level::Delivered);
}

#[tokio::test]
async fn json_callbacks_go_through_levels_1_to_6() {
    let (rs, reg) = run(fast_config(), CallbackType::Json, "1000000001").await;
    assert!(rs
        .iter()
        .all(|r| r.content_type.starts_with("application/json")));
    assert_full_progression(&rs, "1000000001");
    assert!(reg
        .deliveries
        .iter()
        .all(|d| d.acknowledged && d.attempts == 1));
}

#[tokio::test]
async fn json_callbacks_with_numeric_level_decode_too() {
    let mut cfg = fast_config();
    cfg.json_level_as_string = false;
    let (rs, _) = run(cfg, CallbackType::Json, "1000000002").await;
    assert_full_progression(&rs, "1000000002");
}

#[tokio::test]
async fn form_map_callbacks_go_through_levels_1_to_6() {
    let (rs, _) = run(fast_config(), CallbackType::Map, "1000000003").await;
    assert!(rs.iter().all(|r| r
        .content_type
        .starts_with("application/x-www-form-urlencoded")));
    assert_full_progression(&rs, "1000000003");
    // Korean text survives form encoding.
    assert_eq!(rs[6].callback.details.as_deref(), Some("배달완료"));
}

#[tokio::test]
async fn failed_callbacks_are_retried() {
    let (sim, base) = start_sim(fast_config()).await;
    let (rx, cb_url) = start_receiver(2).await;
    register(&base, "1000000004", "R1", &cb_url, CallbackType::Json).await;
    wait_finished(&sim, "1000000004", "04").await;
    let reg = sim.registration("1000000004", "04").unwrap();
    assert_eq!(
        reg.deliveries[0].attempts, 3,
        "two code:false replies then success"
    );
    assert!(reg.deliveries.iter().all(|d| d.acknowledged));
    assert_eq!(levels(&rx.for_fid("R1")), [1, 2, 3, 3, 4, 5, 6]);
}

#[tokio::test]
async fn gives_up_after_the_retry_cap_and_records_why() {
    let mut cfg = fast_config();
    cfg.retry_delays = vec![std::time::Duration::from_millis(5); 2];
    let (sim, base) = start_sim(cfg).await;
    // Nothing listens here: every attempt fails at the transport level.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/cb", listener.local_addr().unwrap());
    drop(listener);
    register(&base, "1000000005", "G1", &dead, CallbackType::Map).await;
    wait_finished(&sim, "1000000005", "04").await;
    let reg = sim.registration("1000000005", "04").unwrap();
    assert_eq!(reg.deliveries.len(), 7);
    for d in &reg.deliveries {
        assert!(!d.acknowledged);
        assert_eq!(d.attempts, 3);
        assert!(d
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("transport")));
    }
}

#[tokio::test]
async fn fault_duplicates() {
    let mut cfg = fast_config();
    cfg.faults = Faults {
        duplicates: true,
        ..Faults::default()
    };
    let (rs, reg) = run(cfg, CallbackType::Json, "1000000006").await;
    assert_eq!(levels(&rs), [1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6]);
    for pair in rs.chunks(2) {
        assert_eq!(pair[0].callback, pair[1].callback, "exact duplicate");
    }
    assert_eq!(reg.deliveries.iter().filter(|d| d.duplicate).count(), 7);
}

#[tokio::test]
async fn fault_out_of_order() {
    let mut cfg = fast_config();
    cfg.faults = Faults {
        out_of_order: true,
        ..Faults::default()
    };
    let (rs, _) = run(cfg, CallbackType::Json, "1000000007").await;
    assert_eq!(levels(&rs), [1, 3, 2, 3, 5, 4, 6]);
    // Timestamps stay with their events: sorting by time_trans restores 1..6.
    let mut sorted = rs.clone();
    sorted.sort_by_key(|r| r.callback.time_trans_parsed());
    assert_eq!(levels(&sorted), [1, 2, 3, 3, 4, 5, 6]);
}

#[tokio::test]
async fn fault_scan_error() {
    let mut cfg = fast_config();
    cfg.faults = Faults {
        scan_error: true,
        ..Faults::default()
    };
    let (rs, _) = run(cfg, CallbackType::Map, "1000000008").await;
    assert_eq!(levels(&rs), [1, 2, 3, -99, 3, 4, 5, 6]);
    assert_eq!(rs[3].callback.level, Level::ScanError);
    assert_eq!(rs[3].callback.details.as_deref(), Some("스캔오류"));
}

#[tokio::test]
async fn fault_silence_sends_nothing_for_that_invoice() {
    let (sim, base) = start_sim(fast_config()).await;
    let (rx, cb_url) = start_receiver(0).await;
    sim.set_silence(true);
    register(&base, "1000000009", "SILENT", &cb_url, CallbackType::Json).await;
    let silent = sim.registration("1000000009", "04").unwrap();
    assert_eq!(silent.planned_events, 0);
    assert!(silent.faults.silence);
    sim.set_silence(false);
    register(&base, "1000000010", "LOUD", &cb_url, CallbackType::Json).await;
    wait_finished(&sim, "1000000010", "04").await;
    assert_eq!(rx.for_fid("LOUD").len(), 7);
    assert!(rx.for_fid("SILENT").is_empty());
    assert!(sim
        .registration("1000000009", "04")
        .unwrap()
        .deliveries
        .is_empty());
}

#[tokio::test]
async fn admin_routes_list_registrations_and_set_faults() {
    let (sim, base) = start_sim(fast_config()).await;
    let http = reqwest::Client::new();
    let f: Faults = http
        .put(format!("{base}/__sim/faults"))
        .json(&serde_json::json!({"silence": true, "duplicates": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(f.silence && f.duplicates && !f.scan_error);
    assert_eq!(sim.faults(), f);
    register(
        &base,
        "1000000011",
        "A1",
        "http://127.0.0.1:9/cb",
        CallbackType::Json,
    )
    .await;
    let regs: serde_json::Value = http
        .get(format!("{base}/__sim/registrations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(regs[0]["num"], "1000000011");
    assert_eq!(regs[0]["callback_type"], "json");
    assert_eq!(regs[0]["finished"], true);
}

#[tokio::test]
async fn without_a_start_time_every_event_lies_in_the_past_or_present() {
    let config = SimConfig {
        start_time: None,
        ..fast_config()
    };
    let (rs, _) = run(config, CallbackType::Json, "1000000077").await;
    assert_full_progression(&rs, "1000000077");
    // The simulator's times are KST wall-clock times without a zone.
    let now_kst = (chrono::Utc::now() + chrono::TimeDelta::hours(9)).naive_utc();
    for r in &rs {
        let cb = &r.callback;
        let tt = cb.time_trans_parsed().expect("time_trans");
        let ts = cb.time_sweet_parsed().expect("time_sweet");
        assert!(tt <= now_kst, "time_trans {tt} is after now {now_kst}");
        assert!(ts <= now_kst, "time_sweet {ts} is after now {now_kst}");
    }
}
