//! The generated least-privilege broker permissions (`deploy/generated/definitions.json`),
//! applied to the real local broker: a fresh random vhost per test with the generated
//! exchanges, queues, bindings and policies, and random users carrying the generated vhost and
//! topic permissions, all imported with `rabbitmqctl import_definitions` (the local broker has
//! no management plugin). Vhost and users are deleted afterwards; the `/` vhost and the guest
//! user are never touched: an extra random observer user looks into the test vhost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use deadpool_lapin::lapin::{
    options::{BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties, ErrorKind,
};
use futures::StreamExt;
use orderbus_contracts::{Party, RoutingKey};
use orderbus_runtime::{CancellationToken, Config, Secret};
use orderbus_testkit::{amqp_url, run_cleanup, unique_suffix, TestDb};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The broker's control tool (`ORDERBUS_TEST_RABBITMQCTL`, default `rabbitmqctl` on the PATH).
fn rabbitmqctl() -> String {
    std::env::var("ORDERBUS_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned())
}

fn run_rabbitmqctl(args: &[&str]) -> Result<()> {
    let output = Command::new(rabbitmqctl())
        .args(args)
        .output()
        .with_context(|| format!("running {} {args:?}", rabbitmqctl()))?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password)).
fn password_hash(password: &str) -> String {
    let salt: Vec<u8> = unique_suffix().bytes().take(4).collect();
    let digest = Sha256::new()
        .chain_update(&salt)
        .chain_update(password.as_bytes())
        .finalize();
    let mut salted = salt;
    salted.extend_from_slice(&digest);
    base64::engine::general_purpose::STANDARD.encode(salted)
}

fn definitions() -> Result<Value> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/generated/definitions.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The generated objects of `section`, moved to `vhost`.
fn in_vhost(defs: &Value, section: &str, vhost: &str) -> Vec<Value> {
    defs[section]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            o["vhost"] = json!(vhost);
            o
        })
        .collect()
}

/// A random vhost holding the generated topology, and one random user per generated broker
/// user (`storefront`, `erp`, …) with exactly the generated permissions.
struct TestBroker {
    vhost: String,
    /// generated user name → (test user name, password)
    users: BTreeMap<String, (String, String)>,
    /// A user with every permission on the test vhost only, to look at queues.
    observer: (String, String),
}

impl TestBroker {
    fn create() -> Result<TestBroker> {
        let suffix = unique_suffix();
        let vhost = format!("orderbus-deploy-test-{suffix}");
        let defs = definitions()?;
        let mut users = BTreeMap::new();
        let mut renamed_permissions = Vec::new();
        for p in in_vhost(&defs, "permissions", &vhost) {
            let generated = p["user"]
                .as_str()
                .context("permission without user")?
                .to_owned();
            let name = format!("orderbus-deploy-test-{suffix}-{generated}");
            users.insert(generated, (name.clone(), unique_suffix()));
            let mut p = p;
            p["user"] = json!(name);
            renamed_permissions.push(p);
        }
        let mut renamed_topic_permissions = Vec::new();
        for mut p in in_vhost(&defs, "topic_permissions", &vhost) {
            let generated = p["user"]
                .as_str()
                .context("topic permission without user")?;
            let (name, _) = users
                .get(generated)
                .with_context(|| format!("topic permission for unknown user {generated:?}"))?;
            p["user"] = json!(name);
            renamed_topic_permissions.push(p);
        }
        let observer = (
            format!("orderbus-deploy-test-{suffix}-observer"),
            unique_suffix(),
        );
        renamed_permissions.push(json!({
            "user": observer.0, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"
        }));
        let user_entries: Vec<Value> = users
            .values()
            .chain(std::iter::once(&observer))
            .map(|(name, password)| {
                json!({"name": name, "password_hash": password_hash(password),
                       "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
            })
            .collect();
        let import = json!({
            "users": user_entries,
            "vhosts": [{"name": vhost}],
            "permissions": renamed_permissions,
            "topic_permissions": renamed_topic_permissions,
            "exchanges": in_vhost(&defs, "exchanges", &vhost),
            "queues": in_vhost(&defs, "queues", &vhost),
            "bindings": in_vhost(&defs, "bindings", &vhost),
            "policies": in_vhost(&defs, "policies", &vhost),
        });
        // From here on Drop removes whatever the import created.
        let broker = TestBroker {
            vhost,
            users,
            observer,
        };
        let file = std::env::temp_dir().join(format!("{}.json", broker.vhost));
        std::fs::write(&file, serde_json::to_vec(&import)?)?;
        let imported = run_rabbitmqctl(&["import_definitions", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        imported.context("importing the generated definitions")?;
        Ok(broker)
    }

    fn user(&self, generated: &str) -> Result<&(String, String)> {
        self.users
            .get(generated)
            .with_context(|| format!("no generated broker user {generated:?}"))
    }

    fn url(&self, (name, password): &(String, String)) -> Result<String> {
        let mut url = reqwest::Url::parse(&amqp_url())?;
        url.set_username(name)
            .map_err(|()| anyhow::anyhow!("cannot set the user in the AMQP URL"))?;
        url.set_password(Some(password))
            .map_err(|()| anyhow::anyhow!("cannot set the password in the AMQP URL"))?;
        url.set_path(&format!("/{}", self.vhost));
        Ok(url.to_string())
    }

    /// The AMQP URL of a generated user on this vhost.
    fn url_for(&self, generated: &str) -> Result<String> {
        self.url(self.user(generated)?)
    }

    async fn connect(&self, generated: &str) -> Result<Connection> {
        let url = self.url_for(generated)?;
        Ok(Connection::connect(&url, ConnectionProperties::default()).await?)
    }

    async fn connect_observer(&self) -> Result<Connection> {
        let url = self.url(&self.observer)?;
        Ok(Connection::connect(&url, ConnectionProperties::default()).await?)
    }

    /// Waits until `queue` holds a message and returns its routing key.
    /// The routing key of the next message in `queue`. A consumer, not `basic.get`: sharded
    /// work queues are single-active-consumer quorum queues, which refuse `basic.get`.
    async fn wait_for_message(&self, conn: &Connection, queue: &str) -> Result<String> {
        let channel = conn.create_channel().await?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                format!("deploy-test-{}", unique_suffix()).as_str().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let next = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .map_err(|_| anyhow::anyhow!("nothing arrived in {queue}"))?;
        let delivery = next.with_context(|| format!("the consumer of {queue} ended"))??;
        let _ = channel.close(200, "done".into()).await;
        Ok(delivery.routing_key.to_string())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let vhost = self.vhost.clone();
        let users: Vec<String> = self
            .users
            .values()
            .chain(std::iter::once(&self.observer))
            .map(|(n, _)| n.clone())
            .collect();
        run_cleanup(async move {
            if let Err(e) = run_rabbitmqctl(&["delete_vhost", &vhost]) {
                eprintln!("cleanup: {e:#}");
            }
            for user in users {
                if let Err(e) = run_rabbitmqctl(&["delete_user", &user]) {
                    eprintln!("cleanup: {e:#}");
                }
            }
        });
    }
}

/// Publishes on a fresh confirm channel; `Ok(())` on a positive confirm.
async fn publish(conn: &Connection, exchange: &str, routing_key: &str) -> Result<(), Refusal> {
    let channel = conn.create_channel().await.map_err(Refusal::from)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(Refusal::from)?;
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .map_err(Refusal::from)?
        .await
        .map_err(Refusal::from)?;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(Refusal::Other("nacked".into()))
    }
}

#[derive(Debug)]
enum Refusal {
    AccessRefused(String),
    Other(String),
}

impl From<deadpool_lapin::lapin::Error> for Refusal {
    fn from(e: deadpool_lapin::lapin::Error) -> Self {
        match e.kind() {
            ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403 => {
                Refusal::AccessRefused(amqp.get_message().to_string())
            }
            _ => Refusal::Other(e.to_string()),
        }
    }
}

fn assert_refused(result: Result<(), Refusal>, what: &str) {
    match result {
        Err(Refusal::AccessRefused(message)) => {
            eprintln!("{what}: refused as expected: {message}")
        }
        Err(Refusal::Other(message)) => panic!("{what}: expected ACCESS_REFUSED, got {message}"),
        Ok(()) => panic!("{what}: expected ACCESS_REFUSED, but it went through"),
    }
}

fn published_by(party: Party) -> Vec<&'static str> {
    RoutingKey::ALL
        .iter()
        .filter(|k| k.publishers().contains(&party))
        .map(|k| k.as_str())
        .collect()
}

#[tokio::test]
async fn deploy_storefront_user_publishes_only_its_own_keys() -> Result<()> {
    let broker = TestBroker::create()?;
    let storefront = broker.connect("storefront").await?;
    let own = published_by(Party::Storefront);
    assert!(!own.is_empty());
    for key in &own {
        publish(&storefront, "amq.topic", key)
            .await
            .map_err(|e| anyhow::anyhow!("{key}: {e:?}"))?;
    }
    assert_refused(
        publish(
            &storefront,
            "amq.topic",
            RoutingKey::ErpCreateChangeOrder.as_str(),
        )
        .await,
        "storefront publishing erp.createChangeOrder",
    );
    assert_refused(
        publish(&storefront, "amq.topic", RoutingKey::OrderPayment.as_str()).await,
        "storefront publishing order.payment",
    );
    // No write on the default exchange: nobody injects straight into a work queue.
    assert_refused(
        publish(&storefront, "", "storefront.order.erpstatus").await,
        "storefront publishing into its own work queue through amq.default",
    );
    Ok(())
}

#[tokio::test]
async fn deploy_unrouted_messages_reach_the_ops_queue_under_a_service_user() -> Result<()> {
    let broker = TestBroker::create()?;
    let storefront = broker.connect("storefront").await?;
    // Nobody in this vhost binds order.submit for business (the ERP's queues are the ERP's),
    // but the ops journal binds every spec key: the journal has its copy.
    publish(&storefront, "amq.topic", RoutingKey::OrderSubmit.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let observer = broker.connect_observer().await?;
    let key = broker.wait_for_message(&observer, "ops.journal").await?;
    assert_eq!(key, "order.submit");
    // A key nobody binds (not a spec key; the services' users may not publish one, so an
    // unrestricted publisher stands in): the alternate-exchange policy on amq.topic catches it.
    publish(&observer, "amq.topic", "order.submitTypo")
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let key = broker.wait_for_message(&observer, "ops.unrouted").await?;
    assert_eq!(key, "order.submitTypo");
    Ok(())
}

#[tokio::test]
async fn deploy_erp_user_cannot_read_storefront_queues_and_publishes_only_erp_keys() -> Result<()> {
    let broker = TestBroker::create()?;
    let erp = broker.connect("erp").await?;
    let channel = erp.create_channel().await?;
    let got = channel
        .basic_get(
            "storefront.order.erpstatus".into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .map(|_| ())
        .map_err(Refusal::from);
    assert_refused(got, "erp reading storefront.order.erpstatus");
    assert_refused(
        publish(&erp, "amq.topic", RoutingKey::OrderSubmit.as_str()).await,
        "erp publishing order.submit",
    );
    // Its own key goes through and lands in the storefront's queue.
    publish(&erp, "amq.topic", RoutingKey::OrderErpStatus.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let storefront = broker.connect("storefront").await?;
    let key = broker
        .wait_for_message(&storefront, "storefront.order.erpstatus")
        .await?;
    assert_eq!(key, "order.erpstatus");
    Ok(())
}

/// The whole storefront runs as its broker user: it declares its topology (configure), binds
/// (topic read), and a message its handler retries goes to the delay tier (write on the tier
/// exchange) and comes back to the work queue by dead-lettering, which needs no permission of
/// the user at all: the retry counter reaches 2 only after the message returned from the tier.
#[tokio::test]
async fn deploy_retry_tier_round_trip_works_under_the_storefront_user() -> Result<()> {
    let broker = TestBroker::create()?;
    let db = TestDb::create().await?;
    let mut config = Config::local("storefront");
    config.amqp_url = Secret::new(broker.url_for("storefront")?);
    config.database_url = Secret::new(db.url());
    config.http_addr = "127.0.0.1:0".parse()?;
    config.shutdown_grace = Duration::from_secs(5);
    // Only the broker side is under test here; the HTTP API is not called.
    config.auth = orderbus_runtime::auth::AuthSettings::open();
    // The queues as deployed (sharded): the generated ones carry those arguments.
    config.topology = orderbus_e2e::configmap_topology(&orderbus_e2e::deploy_dir(), "storefront")?;
    let settings = orderbus_storefront::Settings {
        sweep_interval: None,
        ..orderbus_storefront::Settings::default()
    };
    let shutdown = CancellationToken::new();
    let running = orderbus_storefront::start(config, settings, shutdown.clone()).await?;
    let metrics_url = format!("http://{}/metrics", running.addr());
    let http = reqwest::Client::new();
    let ready_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("http://{}/readyz", running.addr()))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if Instant::now() > ready_deadline {
            bail!("the storefront did not become ready under its broker user");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A status update for an exchange the storefront does not know yet: the handler retries.
    let erp = broker.connect("erp").await?;
    let channel = erp.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = json!({"type": "change", "id": 987_654_321, "status": 10});
    let confirm = channel
        .basic_publish(
            "amq.topic".into(),
            RoutingKey::ErpUpdateChangeRefundOrderStatus.as_str().into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(unique_suffix().as_str().into()),
        )
        .await?
        .await?;
    assert!(confirm.is_ack());

    let queue = "storefront.erp.updateChangeRefundOrderStatus";
    let deadline = Instant::now() + Duration::from_secs(60);
    let retried = loop {
        let text = http.get(&metrics_url).send().await?.text().await?;
        let count = metric_value(&text, "orderbus_messages_retried_total", queue);
        if count >= 2.0 {
            break count;
        }
        if Instant::now() > deadline {
            bail!("retry counter for {queue} stayed at {count}; metrics:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(retried >= 2.0);
    shutdown.cancel();
    running.wait().await?;
    Ok(())
}

/// The sum of `name{queue="…"}` over `queue` and its shard queues (`<queue>.shard.<n>`: the
/// deployed storefront is sharded) in a Prometheus text exposition (0 when absent).
fn metric_value(text: &str, name: &str, queue: &str) -> f64 {
    let exact = format!("queue=\"{queue}\"");
    let shard = format!("queue=\"{queue}.shard.");
    text.lines()
        .filter(|l| l.starts_with(name) && (l.contains(&exact) || l.contains(&shard)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn deploy_ops_replays_only_through_a_services_retry_tier() -> Result<()> {
    let broker = TestBroker::create()?;
    let ops = broker.connect("ops").await?;
    // The replay path: the service's tier exchange, routing key = its work queue; the tier
    // dead-letters it into that work queue on the broker's own authority.
    publish(&ops, "storefront.retry.5s", "storefront.order.erpstatus")
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let observer = broker.connect_observer().await?;
    let key = broker
        .wait_for_message(&observer, "storefront.order.erpstatus")
        .await?;
    assert_eq!(key, "storefront.order.erpstatus");
    assert_refused(
        publish(&ops, "", "storefront.order.erpstatus").await,
        "ops publishing into a work queue through amq.default",
    );
    assert_refused(
        publish(&ops, "amq.topic", RoutingKey::OrderErpStatus.as_str()).await,
        "ops publishing on amq.topic",
    );
    Ok(())
}
