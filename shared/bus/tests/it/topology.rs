//! Topology: explicit arguments, definitions export, idempotent declaration on the real broker.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use orderbus_bus::{
    OutageBudget, QueueLimits, RelayConfig, Subscription, SubscriptionSettings, Topology,
};

fn sample(service: &str) -> Topology {
    Topology::new(service)
        .limits(QueueLimits::default())
        .subscribe(
            Subscription::new("order.payment", Arc::new(Recorder::default()))
                .describe("payments confirmed by the gateway"),
        )
        .subscribe(Subscription::new("erp.*", Arc::new(Recorder::default())))
}

#[test]
fn definitions_list_every_queue_with_explicit_arguments() {
    let t = sample("storefront");
    let defs = t.definitions("/");
    let queues = defs["queues"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = queues.iter().filter_map(|q| q["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "storefront.order.payment",
            "storefront.erp.*",
            "storefront.retry.5s",
            "storefront.retry.30s",
            "storefront.retry.5m",
            "storefront.parking"
        ]
    );
    for q in &queues {
        let a = &q["arguments"];
        assert_eq!(a["x-queue-type"], "quorum");
        assert_eq!(a["x-quorum-initial-group-size"], 3);
        assert!(a["x-max-length"].is_i64());
        assert_eq!(a["x-overflow"], "reject-publish");
    }
    let work = &queues[0]["arguments"];
    assert_eq!(work["x-delivery-limit"], 10);
    assert_eq!(work["x-dead-letter-exchange"], "");
    assert_eq!(work["x-dead-letter-routing-key"], "storefront.parking");
    assert_eq!(work["x-dead-letter-strategy"], "at-least-once");
    let tier = &queues[3]["arguments"];
    assert_eq!(tier["x-message-ttl"], 30_000);
    assert_eq!(tier["x-dead-letter-exchange"], "");
    assert!(
        tier.get("x-dead-letter-routing-key").is_none(),
        "keeps the per-message key"
    );
    let bindings = defs["bindings"].as_array().cloned().unwrap_or_default();
    assert!(bindings.iter().any(|b| b["source"] == "amq.topic"
        && b["destination"] == "storefront.erp.*"
        && b["routing_key"] == "erp.*"));
    // Three delay tiers and the parking exchange.
    assert_eq!(defs["exchanges"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        defs["orderbus_descriptions"]["storefront.order.payment"]
            .as_str()
            .map(|s| s.starts_with("payments confirmed")),
        Some(true)
    );
}

#[test]
fn duplicate_patterns_are_rejected() {
    let t = sample("s").subscribe(Subscription::new("erp.*", Arc::new(Recorder::default())));
    assert!(t.validate().is_err());
}

/// Declaring twice (start + reconnect) succeeds: same names, same arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_is_idempotent() -> TestResult {
    let world = World::new().await?;
    let t = Topology::new(world.service.clone())
        .retry_tiers([Duration::from_millis(200), Duration::from_secs(1)])
        .subscribe(Subscription::new(
            world.key("a"),
            Arc::new(Recorder::default()),
        ));
    let _cleanup = Cleanup::of(&t);
    let conn = orderbus_testkit::connect_amqp().await?;
    let ch = conn.create_channel().await?;
    t.declare(&ch).await?;
    t.declare(&ch).await?;
    for q in t.queues() {
        assert_eq!(queue_depth(&q.name).await?, 0);
    }
    let _ = conn.close(200, "ok".into()).await;
    Ok(())
}

/// Readiness cannot turn true because one component came up while another has not started:
/// consumers and relay register themselves as not ready when they are constructed.
#[tokio::test]
async fn components_are_not_ready_from_construction() {
    let health = orderbus_bus::Health::new();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://postgres@127.0.0.1:5432/postgres")
        .expect("lazy pool");
    let topology = orderbus_bus::Topology::new("readiness-check");
    let _consumers =
        orderbus_bus::Consumers::new(topology, pool.clone(), "amqp://127.0.0.1", health.clone());
    let _relay =
        orderbus_bus::Relay::new(pool, "amqp://127.0.0.1", "readiness-check", health.clone());
    assert_eq!(health.snapshot().len(), 2, "{:?}", health.snapshot());
    health.set("http", true);
    assert!(!health.is_ready(), "{:?}", health.snapshot());
}

/// The length limits follow the outage budget: peak rate × outage messages, bytes with the
/// headroom factor; every work, tier and parking queue carries both limits.
#[test]
fn queue_limits_follow_the_outage_budget() {
    let budget = OutageBudget {
        peak_messages_per_second: 50,
        outage: Duration::from_secs(4 * 3600),
        mean_message_bytes: 2048,
        byte_headroom: 3,
    };
    let limits = QueueLimits::for_budget(&budget);
    assert_eq!(limits.max_length, 720_000);
    assert_eq!(limits.max_length_bytes, 720_000 * 2048 * 3);
    assert_eq!(
        limits.parking_max_length,
        QueueLimits::default().parking_max_length
    );
    let defaults = QueueLimits::default();
    assert_eq!(defaults.max_length, 864_000, "20 msg/s for 12 h");
    assert_eq!(defaults.max_length_bytes, 864_000 * 1024 * 2);

    let t = sample("storefront").limits(limits.clone());
    let defs = t.definitions("/");
    let queues = defs["queues"].as_array().cloned().unwrap_or_default();
    for q in &queues {
        let a = &q["arguments"];
        let parking = q["name"] == "storefront.parking";
        let (len, bytes) = if parking {
            (limits.parking_max_length, limits.parking_max_length_bytes)
        } else {
            (limits.max_length, limits.max_length_bytes)
        };
        assert_eq!(a["x-max-length"], len, "{}", q["name"]);
        assert_eq!(a["x-max-length-bytes"], bytes, "{}", q["name"]);
    }
}

/// Settings round-trip as one struct; the pool needs one connection per worker × partition.
#[test]
fn subscription_settings_and_pool_sizing() {
    let settings = SubscriptionSettings {
        prefetch: 120,
        max_retries: Some(5),
        batch: 20,
        concurrency: 3,
        partitions: 4,
        shards: 1,
    };
    let sub = Subscription::new("order.payment", Arc::new(Recorder::default()))
        .with_settings(settings.clone());
    assert_eq!(sub.settings(), settings);
    assert_eq!(
        Subscription::new("x", Arc::new(Recorder::default())).settings(),
        SubscriptionSettings::default()
    );
    let t = Topology::new("s")
        .subscribe(sub)
        .subscribe(Subscription::new("erp.*", Arc::new(Recorder::default())));
    assert_eq!(t.pool_connections(), 12 + 1);
    assert_eq!(RelayConfig::default().pool_connections(), 4);
}
