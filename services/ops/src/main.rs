//! `orderbus-ops`: the ops service (no subcommand) and the CLI operators run against it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use orderbus_ops::store::Selector;
use orderbus_ops::{queues, start, timeline, Settings};
use orderbus_runtime::{ApiKeyArgs, CancellationToken, RuntimeArgs};
use serde_json::{json, Value};

/// The ops service and CLI. Without a subcommand it runs the service: the journal of every
/// message on amq.topic (ops.journal, ops.unrouted), the parking intake of every service, the
/// monitoring intake (POST /erp/order/publishRabbitmqSentEvent, scope ops:report) and the API
/// (GET: ops:read; replay/purge: ops:replay). The subcommands are the operator's CLI: they
/// call that API (ORDERBUS_OPS_URL, ORDERBUS_OPS_API_KEY), except `queues` (management API).
#[derive(Debug, Parser)]
#[command(name = "orderbus-ops", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
struct ServiceArgs {
    /// The exchange journalled (its alternate exchange must be the unrouted exchange).
    #[arg(
        long,
        env = "ORDERBUS_OPS_JOURNAL_EXCHANGE",
        default_value = "amq.topic"
    )]
    journal_exchange: String,
    /// The journal queue (bound to the spec's 15 keys on the journal exchange).
    #[arg(
        long,
        env = "ORDERBUS_OPS_JOURNAL_QUEUE",
        default_value = "ops.journal"
    )]
    journal_queue: String,
    /// The alternate exchange of amq.topic (a policy in deploy/) and its queue.
    #[arg(long, env = "ORDERBUS_OPS_UNROUTED", default_value = "ops.unrouted")]
    unrouted: String,
    /// Messages per journal INSERT.
    #[arg(long, env = "ORDERBUS_OPS_JOURNAL_BATCH", default_value_t = 200)]
    journal_batch: usize,
    /// Prefetch of the journal consumers.
    #[arg(long, env = "ORDERBUS_OPS_JOURNAL_PREFETCH", default_value_t = 500)]
    journal_prefetch: u16,
    /// Journal rows older than this many days are deleted (in batches).
    #[arg(
        long,
        env = "ORDERBUS_OPS_JOURNAL_RETENTION_DAYS",
        default_value_t = 30
    )]
    journal_retention_days: u64,
    /// Services whose <service>.parking queue ops takes in (comma-separated).
    #[arg(
        long,
        env = "ORDERBUS_OPS_PARKING_SERVICES",
        default_value = "storefront,payments,tracking,fulfilment"
    )]
    parking_services: String,
    /// Services asked for their timeline entries: name=url, comma-separated (Kubernetes:
    /// storefront=http://storefront:8080,...).
    #[arg(long, env = "ORDERBUS_OPS_PEERS", default_value = orderbus_ops::DEFAULT_PEERS)]
    peers: String,
    /// API key ops presents to the services' timeline endpoints (scope ops:read there).
    #[arg(long, env = "ORDERBUS_OPS_PEER_API_KEY", hide_env_values = true)]
    peer_api_key: Option<String>,
    /// Timeout of one service's timeline answer, in milliseconds.
    #[arg(long, env = "ORDERBUS_OPS_PEER_TIMEOUT_MS", default_value_t = 2000)]
    peer_timeout_ms: u64,
    /// A reported message not seen on the bus within this many seconds is missing.
    #[arg(long, env = "ORDERBUS_OPS_MONITOR_WINDOW_SECS", default_value_t = 60)]
    monitor_window_secs: u64,
    /// The retry tier replays go through (<service>.retry.<tier>); `svc=tier` entries after
    /// the default override it per service, e.g. `5s,storefront=200ms`.
    #[arg(long, env = "ORDERBUS_OPS_REPLAY_TIER", default_value = "5s")]
    replay_tier: String,
    /// Default replay rate in messages per second.
    #[arg(long, env = "ORDERBUS_OPS_REPLAY_RATE", default_value_t = 50.0)]
    replay_rate: f64,
    /// Create the database named in ORDERBUS_DATABASE_URL if missing (local development).
    #[arg(long, env = "ORDERBUS_OPS_CREATE_DATABASE")]
    create_database: bool,
}

#[derive(Debug, Args, Clone)]
struct ClientArgs {
    /// The ops service.
    #[arg(
        long,
        env = "ORDERBUS_OPS_URL",
        default_value = "http://127.0.0.1:8084"
    )]
    ops_url: String,
    /// API key (ops:read; ops:replay for replay, purge and redrive).
    #[arg(long, env = "ORDERBUS_OPS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print the JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an API key: prints the key once and the ORDERBUS_API_KEYS entry (its SHA-256).
    ApiKey(ApiKeyArgs),
    /// Everything about one order, in time order, across services (with --raw: payloads).
    Timeline {
        order_code: i64,
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Parked messages of every service: list, show, replay, purge.
    Parking {
        #[command(subcommand)]
        command: ParkingCommand,
    },
    /// Send journalled messages (key, time range) to one service's work queue again.
    Redrive {
        #[arg(long)]
        service: String,
        #[arg(long)]
        routing_key: String,
        /// RFC 3339, e.g. 2026-12-01T10:00:00Z
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: Option<String>,
        /// Why (recorded in the audit; required).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        dry_run: bool,
        /// New message ids (else a consumer that applied a message absorbs its copy).
        #[arg(long)]
        fresh_ids: bool,
        #[arg(long)]
        rate: Option<f64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replays and purges: who, why, what, how many (with an id: its messages).
    Audit {
        id: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Monitoring reports (state: pending | matched | missing | invalid).
    Reports {
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every queue with its purpose, depth, consumers and rates (management API).
    Queues {
        /// Management API with credentials.
        #[arg(
            long,
            env = "ORDERBUS_RABBITMQ_MANAGEMENT_URL",
            default_value = "http://guest:guest@127.0.0.1:15672",
            hide_env_values = true
        )]
        management_url: String,
        #[arg(long, env = "ORDERBUS_RABBITMQ_VHOST", default_value = "/")]
        vhost: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone, Default)]
struct SelectorArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    routing_key: Option<String>,
    /// Substring of the park reason (case-insensitive).
    #[arg(long)]
    reason_contains: Option<String>,
    /// decode | database | retries_exhausted | delivery_limit | inbox | panic | handler
    #[arg(long)]
    class: Option<String>,
    /// RFC 3339
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    order_code: Option<i64>,
    /// name=value of an AMQP header
    #[arg(long)]
    header: Option<String>,
    /// parked (default) | replayed | purged
    #[arg(long)]
    state: Option<String>,
}

fn time(text: &Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    text.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .with_context(|| format!("{t:?} is not an RFC 3339 time"))
        })
        .transpose()
}

impl SelectorArgs {
    fn selector(&self) -> anyhow::Result<Selector> {
        Ok(Selector {
            service: self.service.clone(),
            routing_key: self.routing_key.clone(),
            reason: self.reason_contains.clone(),
            class: self.class.clone(),
            since: time(&self.since)?,
            until: time(&self.until)?,
            order_code: self.order_code,
            header: self.header.clone(),
            state: self.state.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
enum ParkingCommand {
    /// Counts grouped by service, key and reason, and the first messages.
    List {
        #[command(flatten)]
        select: SelectorArgs,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One parked message: reason, headers, body.
    Show {
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-send the selected messages to their service's work queue (through its retry tier).
    Replay {
        #[command(flatten)]
        select: SelectorArgs,
        /// Why (recorded in the audit; required).
        #[arg(long, required_unless_present = "resume")]
        reason: Option<String>,
        /// Print what would be sent; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long)]
        limit: Option<i64>,
        /// Resume an interrupted replay (its audit id).
        #[arg(long)]
        resume: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark the selected messages purged (never re-sent; kept for the audit).
    Purge {
        #[command(flatten)]
        select: SelectorArgs,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn command() -> clap::Command {
    Cli::command()
        .mut_arg("http_addr", |a| a.default_value("127.0.0.1"))
        .mut_arg("http_port", |a| a.default_value("8084"))
}

fn os_user() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
}

struct Api {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(c: &ClientArgs) -> Self {
        Self {
            base: c.ops_url.trim_end_matches('/').to_owned(),
            key: c.api_key.clone(),
            http: reqwest::Client::new(),
        }
    }
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling the ops service at {}", self.base))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("ops service answered {status}: {v}");
        }
        Ok(v)
    }
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn query(s: &Selector) -> String {
    let v = serde_json::to_value(s).unwrap_or(Value::Null);
    let pairs: Vec<(String, String)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn print_groups(v: &Value) {
    println!(
        "{:>6}  {:<12} {:<40} {:<18} REASON",
        "COUNT", "SERVICE", "ROUTING KEY", "CLASS"
    );
    for g in v.as_array().into_iter().flatten() {
        println!(
            "{:>6}  {:<12} {:<40} {:<18} {}",
            g["count"],
            g["service"].as_str().unwrap_or(""),
            g["routing_key"].as_str().unwrap_or(""),
            g["reason_class"].as_str().unwrap_or(""),
            g["reason"].as_str().unwrap_or("")
        );
    }
}

fn print_messages(v: &Value) {
    for m in v.as_array().into_iter().flatten() {
        println!(
            "  #{} {} {} {} orders={} parked_at={} [{}] {}",
            m["id"],
            m["service"].as_str().unwrap_or(""),
            m["routing_key"].as_str().unwrap_or(""),
            m["message_id"].as_str().unwrap_or("-"),
            m["order_codes"],
            m["parked_at"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or(""),
            m["reason"].as_str().unwrap_or("")
        );
    }
}

/// Follows a running replay with a progress bar until it is done or interrupted.
async fn follow(api: &Api, id: i64) -> anyhow::Result<()> {
    let first = api.get(&format!("/audit/{id}")).await?;
    let total = first["audit"]["matched"].as_u64().unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} sent ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let v = api.get(&format!("/audit/{id}")).await?;
        let done = v["audit"]["done"].as_u64().unwrap_or(0);
        let state = v["audit"]["state"].as_str().unwrap_or("?").to_owned();
        bar.set_position(done);
        bar.set_message(state.clone());
        if state != "running" {
            bar.finish();
            if state == "interrupted" {
                println!("replay {id} interrupted at {done}/{total}; resume with: orderbus-ops parking replay --resume {id}");
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                println!("stopped watching; replay {id} goes on in the service \
                          (stop it: POST /audit/{id}/stop; follow: orderbus-ops audit {id})");
                return Ok(());
            }
        }
    }
}

async fn run_cli(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::ApiKey(mint) => print!("{}", mint.run()?),
        Command::Timeline {
            order_code,
            raw,
            client,
        } => {
            let api = Api::new(&client);
            let v = api
                .get(&format!("/orders/{order_code}/timeline?raw={raw}"))
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let t: timeline::Timeline = serde_json::from_value(v)?;
                print!("{}", timeline::render(&t, raw));
            }
        }
        Command::Parking { command } => parking(command).await?,
        Command::Redrive {
            service,
            routing_key,
            since,
            until,
            reason,
            dry_run,
            fresh_ids,
            rate,
            client,
        } => {
            let api = Api::new(&client);
            let v = api
                .post(
                    "/journal/redrive",
                    json!({"service": service, "routing_key": routing_key,
                           "since": time(&Some(since))?, "until": time(&until)?, "reason": reason,
                           "dry_run": dry_run, "fresh_ids": fresh_ids, "rate": rate, "os_user": os_user()}),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            if !dry_run && v["matched"].as_u64().unwrap_or(0) > 0 {
                if let Some(id) = v["audit_id"].as_i64() {
                    follow(&api, id).await?;
                }
            }
        }
        Command::Audit { id, client } => {
            let api = Api::new(&client);
            let v = match id {
                Some(id) => api.get(&format!("/audit/{id}")).await?,
                None => api.get("/audit").await?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::Reports { state, client } => {
            let api = Api::new(&client);
            let path = match state {
                Some(s) => format!("/monitor/reports?state={s}"),
                None => "/monitor/reports".to_owned(),
            };
            println!("{}", serde_json::to_string_pretty(&api.get(&path).await?)?);
        }
        Command::Queues {
            management_url,
            vhost,
            json,
        } => {
            let q = queues::list(&management_url, &vhost).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&q)?);
            } else {
                print!("{}", queues::render(&q));
            }
        }
    }
    Ok(())
}

async fn parking(cmd: ParkingCommand) -> anyhow::Result<()> {
    match cmd {
        ParkingCommand::List {
            select,
            limit,
            client,
        } => {
            let api = Api::new(&client);
            let v = api
                .get(&format!(
                    "/parking?{}&limit={limit}",
                    query(&select.selector()?)
                ))
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{} parked message(s) match", v["total"]);
                print_groups(&v["groups"]);
                println!("first {}:", v["messages"].as_array().map_or(0, Vec::len));
                print_messages(&v["messages"]);
            }
        }
        ParkingCommand::Show { id, client } => {
            let api = Api::new(&client);
            println!(
                "{}",
                serde_json::to_string_pretty(&api.get(&format!("/parking/{id}")).await?)?
            );
        }
        ParkingCommand::Replay {
            select,
            reason,
            dry_run,
            rate,
            limit,
            resume,
            client,
        } => {
            let api = Api::new(&client);
            if let Some(id) = resume {
                let path = match rate {
                    Some(r) => format!("/audit/{id}/resume?rate={r}"),
                    None => format!("/audit/{id}/resume"),
                };
                println!("{}", api.post(&path, json!({})).await?);
                return follow(&api, id).await;
            }
            let v = api
                .post(
                    "/parking/replay",
                    json!({"selector": select.selector()?, "reason": reason.unwrap_or_default(),
                           "dry_run": dry_run, "rate": rate, "limit": limit, "os_user": os_user()}),
                )
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}{} message(s) selected (audit {}), via {}",
                    if dry_run {
                        "DRY RUN: nothing sent. "
                    } else {
                        ""
                    },
                    v["matched"],
                    v["audit_id"],
                    v["via"]
                );
                print_groups(&v["groups"]);
                println!("sample:");
                print_messages(&v["sample"]);
            }
            if !dry_run && v["matched"].as_u64().unwrap_or(0) > 0 {
                if let Some(id) = v["audit_id"].as_i64() {
                    follow(&api, id).await?;
                }
            }
        }
        ParkingCommand::Purge {
            select,
            reason,
            dry_run,
            client,
        } => {
            let api = Api::new(&client);
            let v = api
                .post(
                    "/parking/purge",
                    json!({"selector": select.selector()?, "reason": reason, "dry_run": dry_run, "os_user": os_user()}),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn settings(a: &ServiceArgs, amqp_url: &str) -> anyhow::Result<Settings> {
    let mut s = Settings::local(amqp_url);
    s.journal.exchange = a.journal_exchange.clone();
    s.journal.journal_queue = a.journal_queue.clone();
    s.journal.unrouted_exchange = a.unrouted.clone();
    s.journal.unrouted_queue = a.unrouted.clone();
    s.journal.batch = a.journal_batch.max(1);
    s.journal.prefetch = a.journal_prefetch.max(1);
    s.journal_retention = Duration::from_secs(a.journal_retention_days.max(1) * 86_400);
    s.parking_services = a
        .parking_services
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect();
    s.peers = orderbus_timeline::parse_peers(&a.peers).map_err(anyhow::Error::msg)?;
    s.peer_api_key = a.peer_api_key.clone();
    s.peer_timeout = Duration::from_millis(a.peer_timeout_ms.max(1));
    s.monitor_window = Duration::from_secs(a.monitor_window_secs.max(1));
    let mut overrides = HashMap::new();
    let mut default_tier = None;
    for part in a
        .replay_tier
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
    {
        match part.split_once('=') {
            Some((svc, tier)) => {
                overrides.insert(svc.to_owned(), tier.to_owned());
            }
            None => default_tier = Some(part.to_owned()),
        }
    }
    s.replay_tier = default_tier.unwrap_or_else(|| "5s".into());
    s.replay_tier_overrides = overrides;
    if a.replay_rate.is_nan() || a.replay_rate <= 0.0 {
        bail!("ORDERBUS_OPS_REPLAY_RATE must be positive");
    }
    s.replay_rate = a.replay_rate;
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::from_arg_matches(&command().get_matches())?;
    if let Some(cmd) = cli.command {
        return run_cli(cmd).await;
    }
    let config = cli.runtime.config("ops")?;
    if cli.service.create_database {
        orderbus_runtime::create_database_if_missing(config.database_url.expose()).await?;
    }
    let settings = settings(&cli.service, config.amqp_url.expose())?;
    let shutdown = CancellationToken::new();
    orderbus_runtime::cancel_on_signal(shutdown.clone());
    start(config, settings, shutdown).await?.wait().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_defaults() {
        command().debug_assert();
        let cli =
            Cli::from_arg_matches(&command().get_matches_from(["orderbus-ops"])).expect("parse");
        let config = cli.runtime.config("ops").expect("config");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8084");
        let s = settings(&cli.service, "amqp://x").expect("settings");
        assert_eq!(s.journal.journal_queue, "ops.journal");
        assert_eq!(s.peers.len(), 4);
        let cli = Cli::from_arg_matches(&command().get_matches_from([
            "orderbus-ops",
            "--replay-tier",
            "5s,storefront=200ms",
        ]))
        .expect("parse");
        let s = settings(&cli.service, "amqp://x").expect("settings");
        assert_eq!(s.replay_tier, "5s");
        assert_eq!(
            s.replay_tier_overrides
                .get("storefront")
                .map(String::as_str),
            Some("200ms")
        );
    }
}
