//! One order's whole story: the journal's bus messages, parked messages and monitoring reports
//! (ops' own records) and every service's entries (asked through [`orderbus_timeline::FanOut`]).

use orderbus_timeline::{raw_value, FanOut, PeerAnswer, TimelineEntry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use crate::store;

/// The answer of `GET /orders/{order_code}/timeline`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timeline {
    pub order_code: i64,
    /// Every entry, oldest first.
    pub entries: Vec<TimelineEntry>,
    /// Per service: `ok`, or why its entries are missing.
    pub services: Vec<ServiceStatus>,
    /// The trace ids seen, in order of first appearance.
    pub trace_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    pub status: String,
    pub entries: usize,
}

/// Most journal rows one timeline shows.
pub const JOURNAL_LIMIT: i64 = 5000;

/// Ops' own entries for the order.
pub async fn own_entries(
    pool: &PgPool,
    order_code: i64,
    raw: bool,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let mut out = Vec::new();
    for j in store::journal_for_order(pool, order_code, JOURNAL_LIMIT).await? {
        let summary = format!(
            "{} {} from {}{}{}",
            if j.unrouted { "UNROUTED" } else { "bus" },
            j.routing_key,
            j.app_id.as_deref().unwrap_or("?"),
            status_of(&j.body),
            if j.decoded { "" } else { " (does not decode)" },
        );
        let mut e = TimelineEntry::new(j.seen_at, "ops", "bus_message", summary);
        e.trace_id = j.trace_id.clone();
        e.message_id = j.message_id.clone();
        e.reason = j.decode_error.clone();
        e.detail = json!({
            "journal_id": j.id,
            "routing_key": j.routing_key,
            "app_id": j.app_id,
            "sent_at": j.sent_at,
            "correlation_id": j.correlation_id,
            "decoded": j.decoded,
            "unrouted": j.unrouted,
        });
        if raw {
            e.raw = Some(json!({"body": raw_value(&j.body), "headers": j.headers}));
        }
        out.push(e);
    }
    for p in store::parked_for_order(pool, order_code).await? {
        let mut e = TimelineEntry::new(
            p.parked_at,
            p.service.clone(),
            "parked",
            format!(
                "{} parked {} ({}): now {}",
                p.service, p.routing_key, p.reason_class, p.state
            ),
        );
        e.applied = Some(false);
        e.reason = Some(p.reason.clone());
        e.trace_id = p.trace_id.clone();
        e.message_id = p.message_id.clone();
        e.detail = json!({"parked_id": p.id, "work_queue": p.work_queue, "attempts": p.attempts,
                          "state": p.state, "audit_id": p.audit_id});
        out.push(e);
    }
    for r in store::reports_for_order(pool, order_code).await? {
        let mut e = TimelineEntry::new(
            r.received_at,
            "ops",
            "monitor_report",
            format!(
                "{} reported publishing {}: {} ({})",
                r.sender,
                r.topic.as_deref().unwrap_or("?"),
                r.state,
                r.verdict
            ),
        );
        e.applied = Some(r.state == "matched");
        e.reason = r.verdict_detail.clone();
        e.detail = json!({"report_id": r.id, "verdict": r.verdict, "state": r.state,
                          "journal_id": r.journal_id});
        if raw {
            e.raw = r.body.as_deref().map(|b| raw_value(b.as_bytes()));
        }
        out.push(e);
    }
    Ok(out)
}

fn status_of(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("status") {
            Some(s) => format!(" status {s}"),
            None => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Ops' entries plus every peer's, merged in time order.
pub async fn assemble(
    pool: &PgPool,
    fanout: &FanOut,
    order_code: i64,
    raw: bool,
) -> Result<Timeline, sqlx::Error> {
    let code = order_code.to_string();
    let (own, peers) = tokio::join!(own_entries(pool, order_code, raw), fanout.fetch(&code, raw));
    let mut entries = own?;
    let mut services = Vec::new();
    for PeerAnswer {
        service,
        status,
        entries: mut e,
    } in peers
    {
        services.push(ServiceStatus {
            service,
            status,
            entries: e.len(),
        });
        entries.append(&mut e);
    }
    entries.sort_by_key(|e| e.at);
    let mut trace_ids: Vec<String> = Vec::new();
    for e in &entries {
        if let Some(t) = &e.trace_id {
            if !trace_ids.contains(t) {
                trace_ids.push(t.clone());
            }
        }
    }
    Ok(Timeline {
        order_code,
        entries,
        services,
        trace_ids,
    })
}

/// The timeline as text for the CLI.
pub fn render(t: &Timeline, raw: bool) -> String {
    let mut out = format!("order {}\n", t.order_code);
    for s in &t.services {
        if s.status != "ok" {
            out.push_str(&format!("  (service {}: {})\n", s.service, s.status));
        }
    }
    for e in &t.entries {
        let applied = match e.applied {
            Some(false) => " NOT APPLIED",
            _ => "",
        };
        out.push_str(&format!(
            "{}  {:<10} {:<14} {}{}",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.service,
            e.kind,
            e.summary,
            applied
        ));
        if let Some(r) = &e.reason {
            out.push_str(&format!("  — {r}"));
        }
        if let Some(t) = &e.trace_id {
            out.push_str(&format!("  trace={t}"));
        }
        out.push('\n');
        if raw {
            if let Some(r) = &e.raw {
                out.push_str(&format!("      {r}\n"));
            }
        }
    }
    out
}
