//! Measurement helpers shared by the bench binaries (`make bench`): the bare lapin baselines
//! every ratio is taken against, and process figures. Nothing here asserts a speed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use deadpool_lapin::lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, PublisherConfirm,
};
use futures::StreamExt;

/// A quorum queue bound to `amq.topic` under its own name.
pub async fn bare_queue(channel: &Channel, name: &str) -> Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(name.into(), options, args).await?;
    channel
        .queue_bind(
            name.into(),
            orderbus_bus::TOPIC_EXCHANGE.into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Mandatory, persistent, confirmed publishing with a window of `window` confirms; msg/s.
pub async fn publish_all(
    channel: &Channel,
    exchange: &str,
    key: &str,
    messages: &[(Vec<u8>, BasicProperties)],
    window: usize,
) -> Result<f64> {
    let start = Instant::now();
    let mut in_flight: VecDeque<PublisherConfirm> = VecDeque::with_capacity(window);
    for (body, props) in messages {
        if in_flight.len() >= window {
            if let Some(c) = in_flight.pop_front() {
                check_confirm(c).await?;
            }
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = channel
            .basic_publish(exchange.into(), key.into(), options, body, props.clone())
            .await?;
        in_flight.push_back(confirm);
    }
    while let Some(c) = in_flight.pop_front() {
        check_confirm(c).await?;
    }
    Ok(messages.len() as f64 / start.elapsed().as_secs_f64())
}

pub async fn check_confirm(c: PublisherConfirm) -> Result<()> {
    let confirmation = c.await?;
    if !confirmation.is_ack() || confirmation.take_message().is_some() {
        bail!("publish was nacked or returned");
    }
    Ok(())
}

/// Consume + ack every message of a pre-filled queue with prefetch `prefetch`; msg/s.
pub async fn bare_consume(conn: &Connection, queue: &str, n: usize, prefetch: u16) -> Result<f64> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let start = Instant::now();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "bench-bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut got = 0;
    while got < n {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .context("bare consume stalled")?
            .context("consumer ended")??;
        delivery.ack(BasicAckOptions::default()).await?;
        got += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    channel.close(200, "done".into()).await.ok();
    Ok(rate)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
