//! Journal completeness: every fixture of the 15 keys, hostile bodies and unrouted keys, with
//! a journal outage in the middle → one row each, attributed to its order; none lost, none
//! doubled.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{eventually, order_code, props, trace_id, Ops, Publisher};

fn fixtures() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut out = Vec::new();
    for group in ["mq-spec", "orderbus"] {
        for dir in std::fs::read_dir(root.join(group))? {
            let dir = dir?;
            let key = dir.file_name().to_string_lossy().into_owned();
            for f in std::fs::read_dir(dir.path())? {
                out.push((key.clone(), std::fs::read(f?.path())?));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hostile bodies on spec keys, each naming order `code` somewhere a lenient reader finds it.
fn hostile(code: i64) -> Vec<(String, Vec<u8>, bool)> {
    vec![
        (
            "order.erpstatus".into(),
            format!(r#"{{"uid":1,"order_code":{code},"status":"x"}}"#).into_bytes(),
            true,
        ),
        (
            "order.erpstatus".into(),
            format!(r#"{{"uid":1,"order_code":"{code}","status":100,"status":700}}"#).into_bytes(),
            true,
        ),
        (
            "order.payment".into(),
            format!(r#"{{"order_code":{code},"amount":"1e999"}}"#).into_bytes(),
            true,
        ),
        (
            "erp.updateInvoicePdfUrl".into(),
            format!("{{\"orderCode\":{code},\"pdfUrl\":\"a\u{0}b\"}}").into_bytes(),
            true,
        ),
        (
            "order.deliveryAddress".into(),
            format!(r#"[{{"order_code":{code}}}]"#).into_bytes(),
            true,
        ),
        (
            "order.updateExpressInfo".into(),
            b"\xff\xfe\x00 not json at all".to_vec(),
            false,
        ),
        ("order.submit".into(), Vec::new(), false),
        (
            "order.orderStatus".into(),
            "{\"orderCode\": 1".repeat(2000).into_bytes(),
            false,
        ),
    ]
}

/// routing key, decoded, unrouted, order codes, refs, trace id, via
type Row = (
    String,
    bool,
    bool,
    Vec<i64>,
    Vec<String>,
    Option<String>,
    String,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_journalled_once_through_an_outage() -> anyhow::Result<()> {
    let ops = Ops::start(|_| {}).await?;
    let publisher = Publisher::to(&ops.exchange).await?;
    let fixtures = fixtures()?;
    assert!(
        fixtures.len() >= 15,
        "the golden fixtures cover the 15 keys"
    );
    let code = order_code()?;
    let trace = trace_id();
    for (key, body) in &fixtures {
        publisher.publish(key, body, props(&trace)).await?;
    }
    for (key, body, _) in hostile(code) {
        publisher.publish(&key, &body, props(&trace)).await?;
    }
    // Unbound keys: only the alternate exchange takes them.
    publisher
        .publish(
            "order.erpstatusTypo",
            format!(r#"{{"order_code":{code}}}"#).as_bytes(),
            props(&trace),
        )
        .await?;
    publisher
        .publish("nobody.binds.this", b"{}", props(&trace))
        .await?;
    let first = (fixtures.len() + hostile(code).len() + 2) as i64;
    eventually("first round journalled", || async {
        (ops.journal_rows().await.ok()? == first).then_some(())
    })
    .await?;

    // Outage: the journal is down while the bus keeps carrying messages.
    let (db, settings) = ops.stop().await?;
    for (key, body) in &fixtures {
        publisher.publish(key, body, props(&trace)).await?;
    }
    // A redelivered duplicate (same message id) while it is down.
    let dup = props(&trace);
    publisher
        .publish(
            "order.erpstatus",
            br#"{"uid":1,"order_code":5,"status":100}"#,
            dup.clone(),
        )
        .await?;
    publisher
        .publish(
            "order.erpstatus",
            br#"{"uid":1,"order_code":5,"status":100}"#,
            dup,
        )
        .await?;
    let ops = Ops::start_with(db, settings).await?;
    let total = first + fixtures.len() as i64 + 1;
    eventually("second round journalled", || async {
        (ops.journal_rows().await.ok()? == total).then_some(())
    })
    .await?;

    let pool = ops.pool();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT routing_key, decoded, unrouted, order_codes, refs, trace_id, via FROM journal ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    assert_eq!(rows.len() as i64, total);
    for (key, decoded, unrouted, codes, refs, t, _) in &rows {
        assert_eq!(t.as_deref(), Some(trace.as_str()), "{key}: trace id kept");
        if !unrouted && decoded == &true {
            assert!(
                !codes.is_empty() || !refs.is_empty(),
                "{key}: attributed to an order or after-sale id"
            );
        }
    }
    let decoded = rows.iter().filter(|r| r.1).count();
    assert_eq!(
        decoded,
        2 * fixtures.len() + 1,
        "every fixture (and the duplicate's original) decodes"
    );
    // Hostile bodies: journalled, marked, attributed where they name the order.
    let mine = orderbus_ops::store::journal_for_order(pool, code, 100).await?;
    let hostile_named = hostile(code).iter().filter(|h| h.2).count();
    assert_eq!(mine.iter().filter(|j| !j.unrouted).count(), hostile_named);
    assert!(mine.iter().all(|j| !j.decoded && j.decode_error.is_some()));
    // Unrouted: captured through the alternate exchange, journalled, attributed.
    let unrouted: Vec<_> = rows.iter().filter(|r| r.2).collect();
    assert_eq!(unrouted.len(), 2);
    assert!(unrouted
        .iter()
        .all(|r| r.6 == ops.settings.journal.unrouted_queue));
    assert_eq!(
        mine.iter().filter(|j| j.unrouted).count(),
        1,
        "the unrouted typo names the order"
    );
    // An exchange's ERP status update is found through the ids the exchange's messages tie.
    let spec_change: Value = serde_json::from_slice(
        &fixtures
            .iter()
            .find(|f| f.0 == "order.createChangeOrder")
            .map(|f| f.1.clone())
            .unwrap_or_default(),
    )?;
    let change_order = spec_change["order_code"].as_i64().unwrap_or_default();
    let story = orderbus_ops::store::journal_for_order(pool, change_order, 1000).await?;
    assert!(story
        .iter()
        .any(|j| j.routing_key == "order.createChangeOrder"));
    assert!(
        story
            .iter()
            .any(|j| j.routing_key == "erp.updateChangeRefundOrderStatus"),
        "status updates by ERP exchange id belong to the order: {:?}",
        story.iter().map(|j| &j.routing_key).collect::<Vec<_>>()
    );
    Ok(())
}
