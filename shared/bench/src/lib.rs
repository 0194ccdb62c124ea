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

/// min / median / max of the rounds, and the rounds themselves, for `latest.json`.
pub fn spread(rounds: &[f64]) -> serde_json::Value {
    let mut v = rounds.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    serde_json::json!({
        "min": v.first().copied().unwrap_or(0.0),
        "median": median(v.clone()),
        "max": v.last().copied().unwrap_or(0.0),
        "rounds": rounds,
    })
}

/// `min / median / max` as printed in the tables.
pub fn spread_text(rounds: &[f64], decimals: usize) -> String {
    let mut v = rounds.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = (
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    );
    format!(
        "{lo:.decimals$} / {:.decimals$} / {hi:.decimals$}",
        median(v)
    )
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on every Linux
/// build this project runs on).
const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system, all threads) a process has used so far; `None` if it is gone.
/// 10 ms resolution: phases are measured over seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// This process's CPU seconds so far.
pub fn cpu_seconds() -> f64 {
    process_cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// (VmRSS, VmHWM) of a process in MB; zeros if it is gone.
pub fn process_rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
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

/// The machine a run was measured on: CPUs, kernel, and PostgreSQL's `pg_test_fsync` (one
/// second per method, in a temporary file) — quorum queues and commits both scale with it.
pub fn machine() -> serde_json::Value {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "nproc": nproc,
        "kernel": kernel,
        "pg_test_fsync": pg_test_fsync(),
    })
}

/// Runs `pg_test_fsync -s 1` and reads the 8 kB single-write `fdatasync` line, e.g.
/// `fdatasync  8950.123 ops/sec  112 usecs/op`; the error text if it cannot.
pub fn pg_test_fsync() -> serde_json::Value {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join("pg_test_fsync"))
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("pg_test_fsync"));
    let file = std::env::temp_dir().join(format!("orderbus-bench-fsync-{}", std::process::id()));
    let out = std::process::Command::new(&bin)
        .arg("-s")
        .arg("1")
        .arg("-f")
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => return serde_json::json!({ "error": String::from_utf8_lossy(&o.stderr).trim() }),
        Err(e) => return serde_json::json!({ "error": format!("{}: {e}", bin.display()) }),
    };
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fdatasync") && l.contains("ops/sec"));
    let nums: Vec<f64> = line
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse::<f64>().ok())
                .collect()
        })
        .unwrap_or_default();
    match (nums.first(), nums.get(1)) {
        (Some(ops), Some(us)) => serde_json::json!({
            "method": "fdatasync, one 8 kB write",
            "ops_per_s": ops,
            "usecs_per_op": us,
        }),
        _ => serde_json::json!({ "error": "no fdatasync line", "output": out }),
    }
}
