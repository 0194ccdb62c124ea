//! Hostile callbacks: no token, a wrong token, a token of another order, a wrong invoice, an
//! unknown fid, garbage bodies. Refused or ignored, never a panic, never a status change.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_and_garbage_change_nothing() -> anyhow::Result<()> {
    let mut w = World::new(fast_sim()).await?;
    let base = w.start(w.settings("only")).await?;
    w.sim.set_silence(true);
    let (code, other) = (order_code(), order_code());
    let num = waybill();
    w.publish_600(code, 1, 23, &num).await?;
    w.publish_600(other, 1, 23, &waybill()).await?;
    for c in [code, other] {
        w.shipment_where(c, "shipment", |s, _| s == "OS02").await?;
    }
    w.run_slot(seoul_noon(2)?, 1).await?;
    let url = w
        .sim
        .registration(&num, "04")
        .map(|r| r.callback_url)
        .ok_or_else(|| anyhow::anyhow!("not registered"))?;
    let delivered = |fid: &str, invoice: &str| {
        serde_json::json!({ "fid": fid, "invoice_no": invoice, "level": "6",
            "time_trans": "2026-12-01 10:00:00", "where": "충남천안청당", "details": "배달완료" })
        .to_string()
    };
    let http = reqwest::Client::new();
    let post = |url: String, body: String, ct: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
            anyhow::Ok((status, v))
        }
    };
    let fid = format!("OS02:{code}");
    // No token, a wrong one: 401 with SweetTracker's failure body.
    let bare = format!("{base}/delivery/tracking_receive");
    let (s, v) = post(bare.clone(), delivered(&fid, &num), "application/json").await?;
    assert_eq!(
        (s, v["code"].clone()),
        (401, serde_json::json!(false)),
        "{v}"
    );
    let (s, _) = post(
        format!("{bare}?token=guessed"),
        delivered(&fid, &num),
        "application/json",
    )
    .await?;
    assert_eq!(s, 401);
    // The right token with another order's fid, a wrong invoice, an unknown fid: refused.
    for (body, why) in [
        (delivered(&format!("OS02:{other}"), &num), "another order"),
        (delivered(&fid, "111111111111"), "wrong invoice"),
        (delivered("OS02:notanumber", &num), "unknown fid"),
        (delivered(&format!("OS30:{code}"), &num), "wrong status"),
        (delivered("", &num), "empty fid"),
    ] {
        let (s, v) = post(url.clone(), body, "application/json").await?;
        assert!(s == 200 || s == 400, "{why}: {s} {v}");
        assert_eq!(v["code"], false, "{why}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").starts_with("fail - "),
            "{why}: {v}"
        );
    }
    // Garbage bodies: never a 5xx, always SweetTracker's JSON failure.
    let garbage: Vec<(String, &'static str)> = vec![
        ("".into(), "application/json"),
        ("{".into(), "application/json"),
        ("[1,2,3]".into(), "application/json"),
        ("{\"fid\":1}".into(), "application/json"),
        ("\u{0}\u{1}\u{2}".into(), "application/octet-stream"),
        (
            "fid=OS02%3A1&level=77".into(),
            "application/x-www-form-urlencoded",
        ),
        (
            format!("fid={fid}&invoice_no={num}&level=six"),
            "application/x-www-form-urlencoded",
        ),
        ("%%%%".into(), "application/x-www-form-urlencoded"),
        ("x".repeat(300 * 1024), "application/json"),
    ];
    for (body, ct) in garbage {
        let (s, v) = post(url.clone(), body.clone(), ct).await?;
        assert!(
            (400..500).contains(&s),
            "{s} for {:?}",
            &body[..body.len().min(40)]
        );
        assert_eq!(v["code"], false, "{v}");
    }
    let (status, stage) = w.shipment_where(code, "unchanged", |_, _| true).await?;
    assert_eq!((status.as_str(), stage), ("OS02", None), "nothing moved");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM trk_events")
        .fetch_one(w.db.pool())
        .await?;
    assert_eq!(events, 0);
    // The token works for its own fid and invoice (form body, level as a number).
    let form = format!("fid={fid}&invoice_no={num}&level=6&time_trans=2026-12-01%2010:00:00");
    let (s, v) = post(url.clone(), form, "application/x-www-form-urlencoded").await?;
    assert_eq!(
        (s, v.clone()),
        (200, serde_json::json!({"code": true, "message": "success"})),
        "{v}"
    );
    w.shipment_where(code, "delivered", |s, st| {
        s == "OS03" && st == Some("delivered")
    })
    .await?;
    let rejected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingress_log WHERE partner = 'sweettracker' AND status = 401",
    )
    .fetch_one(w.db.pool())
    .await?;
    assert_eq!(rejected, 2, "callbacks without a valid token are logged");
    w.stop_all().await
}
