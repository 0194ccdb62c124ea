//! The storefront's part of the cross-service order timeline (`orderbus-timeline`): its
//! `order_timeline` rows (every event offered to the order, applied or not and why), served
//! at `GET /timeline/orders/{order_code}` to keys with `ops:read`.

use std::sync::Arc;

use orderbus_timeline::{source_fn, SourceError, TimelineEntry, TimelineSource};
use serde_json::json;
use sqlx::PgPool;

use crate::ids::OrderCode;
use crate::store::read_model as rows;

/// The storefront's transitions of one order as timeline entries.
pub fn source(pool: PgPool, service: String) -> Arc<dyn TimelineSource> {
    source_fn("order_timeline", move |order_code, raw| {
        let (pool, service) = (pool.clone(), service.clone());
        Box::pin(async move {
            let Ok(code) = order_code.parse::<OrderCode>() else {
                return Ok(Vec::new());
            };
            let mut conn = pool.acquire().await?;
            let found = rows::timeline(&mut conn, code).await?;
            Ok::<_, SourceError>(
                found
                    .into_iter()
                    .map(|r| {
                        let moved = match (&r.status_before, &r.status_after) {
                            (Some(b), Some(a)) if b != a => format!(" ({b} -> {a})"),
                            _ => String::new(),
                        };
                        let mut e = TimelineEntry::new(
                            r.at,
                            service.clone(),
                            "transition",
                            format!(
                                "{} {} via {}: {}{moved}",
                                r.subject,
                                r.event,
                                r.source,
                                if r.applied { "applied" } else { "not applied" }
                            ),
                        );
                        e.applied = Some(r.applied);
                        e.reason = r.reason;
                        e.message_id = r.message_id;
                        e.detail = json!({
                            "subject": r.subject, "source": r.source, "event": r.event,
                            "status_before": r.status_before, "status_after": r.status_after,
                        });
                        if raw {
                            e.raw = Some(r.detail);
                        }
                        e
                    })
                    .collect(),
            )
        })
    })
}
