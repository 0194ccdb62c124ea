//! Journal completeness: every fixture of the 15 keys, hostile bodies and unrouted keys, with
//! a journal outage in the middle → one row each, attributed to its order; none lost, none
//! doubled.

use std::path::PathBuf;

use serde_json::{json, Value};

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
            format!(r#"{{"order_code":{code},"amount":-1}}"#).into_bytes(),
            true,
        ),
        (
            "erp.updateInvoicePdfUrl".into(),
            format!(r#"{{"orderCode":{code},"pdfUrl":"a\u0000b"}}"#).into_bytes(),
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

fn fixture(fixtures: &[(String, Vec<u8>)], key: &str, nth: usize) -> anyhow::Result<Value> {
    let body = fixtures
        .iter()
        .filter(|f| f.0 == key)
        .nth(nth)
        .map(|f| f.1.clone())
        .ok_or_else(|| anyhow::anyhow!("no fixture {key}"))?;
    Ok(serde_json::from_slice(&body)?)
}

/// order.createChangeOrder → erp.createChangeOrder → erp.updateChangeRefundOrderStatus for one
/// exchange of `order`, with ids that tie them (the spec's samples do not).
fn exchange_chain(
    fixtures: &[(String, Vec<u8>)],
    order: i64,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let front = order % 1_000_000_000 + 7;
    let erp = order % 1_000_000_000 + 9;
    let mut create = fixture(fixtures, "order.createChangeOrder", 0)?;
    create["id"] = json!(front);
    for f in ["order_code", "init_order_code", "source_order_code"] {
        create[f] = json!(order);
    }
    let mut created = fixture(fixtures, "erp.createChangeOrder", 0)?;
    created["code"] = json!(200);
    created["message"] = json!("ok");
    created["data"]["id"] = json!(front);
    created["data"]["exchange_id"] = json!(erp);
    created["data"]["returned_id"] = json!(erp + 1);
    created["data"]["init_order_code"] = json!(order);
    created["data"]["source_order_code"] = json!(order);
    created["data"]["new_order_code"] = json!(order + 1);
    created["data"]["exchange_status"] = json!(10);
    created["data"]["returned_status"] = json!(10);
    let status = json!({"id": erp, "status": 10, "type": "change"});
    Ok(vec![
        (
            "order.createChangeOrder".into(),
            serde_json::to_vec(&create)?,
        ),
        (
            "erp.createChangeOrder".into(),
            serde_json::to_vec(&created)?,
        ),
        (
            "erp.updateChangeRefundOrderStatus".into(),
            serde_json::to_vec(&status)?,
        ),
    ])
}

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
    // One exchange's chain with consistent ids: ours (front id), the ERP's (exchange id).
    let chain_order = order_code()?;
    let chain = exchange_chain(&fixtures, chain_order)?;
    for (key, body) in &chain {
        publisher.publish(key, body, props(&trace)).await?;
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
    let first = (fixtures.len() + chain.len() + hostile(code).len() + 2) as i64;
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
        2 * fixtures.len() + chain.len() + 1,
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
    let story = orderbus_ops::store::journal_for_order(pool, chain_order, 1000).await?;
    let keys: Vec<&str> = story.iter().map(|j| j.routing_key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "order.createChangeOrder",
            "erp.createChangeOrder",
            "erp.updateChangeRefundOrderStatus"
        ],
        "the exchange's story, tied by its ids"
    );
    Ok(())
}
