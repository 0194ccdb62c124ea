//! R11, the broker's ack timeout: a handler that hangs past `consumer_timeout` loses its channel
//! (PRECONDITION_FAILED). The kit notices at once, abandons that work (rolled back), rebuilds, and
//! the redelivered message is applied once; the other subscription keeps working.
//!
//! The test lowers the broker-wide `consumer_timeout` for its duration, so it is a `serial_` test:
//! nextest runs it alone (see `.config/nextest.toml`), and a guard restores the old value.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use orderbus_bus::{
    ConsumerConfig, Consumers, Delivery, Handler, HandlerFuture, Health, Subscription, Topology,
};
use orderbus_testkit::{amqp_url, ErpPublisher};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

fn rabbitmqctl_eval(expr: &str) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .args(["eval", expr])
        .output()
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Sets the broker's `consumer_timeout` and puts the previous setting back when dropped.
struct ConsumerTimeout {
    previous: String,
}

impl ConsumerTimeout {
    fn set(ms: u64) -> Result<Self, String> {
        let previous = rabbitmqctl_eval("application:get_env(rabbit, consumer_timeout).")?;
        rabbitmqctl_eval(&format!(
            "application:set_env(rabbit, consumer_timeout, {ms})."
        ))?;
        Ok(Self { previous })
    }
}

impl Drop for ConsumerTimeout {
    fn drop(&mut self) {
        // `{ok,1800000}` → put it back; `undefined` → unset.
        let restore = match self
            .previous
            .strip_prefix("{ok,")
            .and_then(|v| v.strip_suffix('}'))
        {
            Some(v) => format!("application:set_env(rabbit, consumer_timeout, {v})."),
            None => "application:unset_env(rabbit, consumer_timeout).".to_owned(),
        };
        if let Err(e) = rabbitmqctl_eval(&restore) {
            eprintln!(
                "could not restore consumer_timeout ({}): {e}",
                self.previous
            );
        }
    }
}

/// Hangs (practically forever) on its first call, then records like [`Recorder`].
struct HangsOnce {
    calls: Arc<AtomicUsize>,
    record: Recorder,
}

impl Handler for HangsOnce {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            self.record.handle(d, conn).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_ack_timeout_closes_the_channel_and_the_message_is_applied_once() -> TestResult {
    let world = World::new().await?;
    let hang_key = world.key("hang");
    let other_key = world.key("other");
    let calls = Arc::new(AtomicUsize::new(0));
    let other = Recorder::default();
    let topology = Topology::new(world.service.clone())
        .retry_tiers([Duration::from_millis(200)])
        .subscribe(Subscription::new(
            &hang_key,
            Arc::new(HangsOnce {
                calls: calls.clone(),
                record: Recorder::default(),
            }),
        ))
        .subscribe(Subscription::new(&other_key, Arc::new(other.clone())));
    let _cleanup = Cleanup::of(&topology);

    // Channels read the timeout when they open: lower it before the consumers start.
    let _timeout = ConsumerTimeout::set(2_000)?;
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let consumers = Consumers::new(topology, world.pool().clone(), amqp_url(), health.clone())
        .with_config(ConsumerConfig {
            // Longer than the broker's timeout: the broker, not the kit, gives up first.
            handler_timeout: Duration::from_secs(3600),
            ..fast_consumer_config()
        });
    let task = tokio::spawn(consumers.run(shutdown.clone()));
    wait_until(Duration::from_secs(10), || async {
        health.is_ready().then_some(())
    })
    .await
    .ok_or("consumers not ready")?;

    let erp = ErpPublisher::connect().await?;
    let started = Instant::now();
    erp.publish(&hang_key, &body("stuck")).await?;
    wait_until(Duration::from_secs(10), || async {
        (calls.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await
    .ok_or("the handler never started")?;
    // While one handler hangs, the other subscription's channel keeps working.
    for i in 0..20 {
        erp.publish(&other_key, &body(format!("other-{i}"))).await?;
    }
    // The hung handler sleeps for an hour: an effect for "stuck" can only come from the broker
    // closing the channel, the kit noticing, and the redelivery being handled.
    let applied = wait_until(Duration::from_secs(150), || async {
        let effects = world.effects().await.ok()?;
        (effects.iter().any(|(k, _)| k == "stuck") && effects.len() >= 21).then_some(())
    })
    .await;
    let took = started.elapsed();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    applied.ok_or("the stuck message was never applied")?;

    world.assert_exactly_once(21).await?;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "hung once, then redelivered once"
    );
    assert_eq!(other.calls(), 20);
    println!("ack timeout: the stuck message was applied {took:?} after it was published");
    Ok(())
}
