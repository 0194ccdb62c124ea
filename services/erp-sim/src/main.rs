//! `orderbus-erp-sim`: the DEVELOPMENT/TEST STAND-IN for the ERP (never deployed to production).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use orderbus_erp_sim::config::{
    parse_duration, parse_rate, DEFAULT_DATABASE_URL, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT_TEXT,
};
use orderbus_erp_sim::{publish, Delays, ErpSim, SimConfig};
use orderbus_runtime::config::DEFAULT_AMQP_URL;
use orderbus_runtime::RuntimeArgs;

const ABOUT: &str = "DEVELOPMENT/TEST STAND-IN for the ERP on the orderbus broker. \
NOT the ERP, NOT deployed to production.";

const LONG_ABOUT: &str = "DEVELOPMENT/TEST STAND-IN for the ERP on the orderbus broker. \
It is NOT the ERP and is NOT deployed to production.

`run` plays the ERP on amq.topic as the MQ spec describes: order.payment → order.erpstatus \
100 → 200 → 600 → 700 → blue invoice; exchanges/returns answered (200, or 500/91 at \
--reject-rate) and walked; order.changeRefundCancel stops a walk. `publish` sends any spec \
message from a JSON file or stdin after validating it against the contracts.";

#[derive(Parser, Debug)]
#[command(name = "orderbus-erp-sim", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Play the ERP until SIGTERM/Ctrl-C: a DEVELOPMENT/TEST STAND-IN, NOT deployed to production.
    Run(Box<RunArgs>),
    /// Validate a message against its routing key's contract and publish it on amq.topic
    /// (persistent, mandatory, publisher confirms). Refuses invalid bodies, naming the field.
    Publish(PublishArgs),
}

#[derive(Args, Debug)]
struct Broker {
    /// RabbitMQ URL.
    #[arg(long, env = "ORDERBUS_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true)]
    amqp_url: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Broker, database, HTTP, pool, relay…: the runtime's settings. The stand-in's own
    /// database and ops port have their own names (ERP_SIM_DATABASE_URL, ERP_SIM_HTTP_ADDR,
    /// ERP_SIM_HTTP_PORT), so one environment can run it beside the storefront.
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Create the database first if it does not exist (what `make run` does).
    #[arg(long)]
    create_database: bool,
    /// Queue prefix and AMQP app_id.
    #[arg(long, env = "ERP_SIM_SERVICE", default_value = "erp-sim")]
    service: String,
    /// DEVELOPMENT CONVENIENCE, off by default: publish order.payment for every order.submit
    /// (JIT children excepted), standing in for the payments service.
    #[arg(long, env = "ERP_SIM_AUTO_PAY")]
    auto_pay: bool,
    /// Share (0..1) of exchange/return requests rejected with 500 / status 91. 0 = never,
    /// 1 = always.
    #[arg(long, env = "ERP_SIM_REJECT_RATE", default_value = "0", value_parser = parse_rate)]
    reject_rate: f64,
    /// Chance (0..1) that customer service changes a paid order's address
    /// (erp.deliveryAddressUpdate right after status 100).
    #[arg(long, env = "ERP_SIM_ADDRESS_CHANGE_RATE", default_value = "0", value_parser = parse_rate)]
    address_change_rate: f64,
    /// Send order.erpstatus 906 (ERP auto-cancel) for an order not paid within this time
    /// (e.g. 10m). Default: unpaid orders wait for their payment forever.
    #[arg(long, env = "ERP_SIM_UNPAID_CANCEL_AFTER", value_parser = parse_duration)]
    unpaid_cancel_after: Option<Duration>,
    /// Set every step delay at once (e.g. 200ms); the per-step options below override it.
    #[arg(long, env = "ERP_SIM_DELAY", value_parser = parse_duration)]
    delay: Option<Duration>,
    /// order.submit → order.payment (auto-pay). [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    auto_pay_delay: Option<Duration>,
    /// order.payment → 100 audited. [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    audit_delay: Option<Duration>,
    /// 100 → 200 stocked. [default: 3s]
    #[arg(long, value_parser = parse_duration)]
    stock_delay: Option<Duration>,
    /// 200 → 600 shipped. [default: 3s]
    #[arg(long, value_parser = parse_duration)]
    ship_delay: Option<Duration>,
    /// 600 → 700 delivered. [default: 5s]
    #[arg(long, value_parser = parse_duration)]
    deliver_delay: Option<Duration>,
    /// 700 → blue invoice; return 40 → red invoice. [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    invoice_delay: Option<Duration>,
    /// Exchange/return request → erp.createChangeOrder / erp.createRefundOrder. [default: 1s]
    #[arg(long, value_parser = parse_duration)]
    create_answer_delay: Option<Duration>,
    /// Create answer → status 10 approved. [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    approve_delay: Option<Duration>,
    /// Customer's waybill → return 20 goods sent back. [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    sent_back_delay: Option<Duration>,
    /// → 30 goods received (exchange and return). [default: 3s]
    #[arg(long, value_parser = parse_duration)]
    received_delay: Option<Duration>,
    /// 30 → exchange 50 completed / return 40 refunded. [default: 3s]
    #[arg(long, value_parser = parse_duration)]
    complete_delay: Option<Duration>,
    /// Carrier id sent in order.erpstatus 600 data.express_id.
    #[arg(long, env = "ERP_SIM_EXPRESS_ID", default_value_t = 23)]
    express_id: i64,
    /// Base of the invoice PDF URLs (<base>/<order code>/blue.pdf, …/red.pdf).
    #[arg(
        long,
        env = "ERP_SIM_INVOICE_BASE_URL",
        default_value = "http://localhost/erp-sim/invoices"
    )]
    invoice_base_url: String,
    /// Play the ERP only for this customer uid (repeatable); default: everyone.
    #[arg(long = "only-uid")]
    only_uids: Vec<i64>,
}

#[derive(Args, Debug)]
struct PublishArgs {
    #[command(flatten)]
    broker: Broker,
    /// One of the MQ spec's 15 routing keys, e.g. erp.deliveryAddressUpdate.
    routing_key: String,
    /// JSON body file; `-` or nothing reads stdin.
    file: Option<PathBuf>,
    /// AMQP app_id of the published message.
    #[arg(long, default_value = "erp-sim")]
    app_id: String,
    /// Upper bound for connecting, publishing and the broker's confirm.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

/// The runtime settings the stand-in names and defaults differently from a service.
fn command() -> clap::Command {
    Cli::command().mut_subcommand("run", |run| {
        run.mut_arg("database_url", |a| {
            a.env("ERP_SIM_DATABASE_URL")
                .default_value(DEFAULT_DATABASE_URL)
                .help("The stand-in's own database (inbox, outbox, scheduled answers).")
        })
        // DATABASE_URL names the checked service's database (sqlx tools), not the stand-in's.
        .mut_arg("database_url_fallback", |a| a.env(None))
        .mut_arg("http_addr", |a| {
            a.env("ERP_SIM_HTTP_ADDR")
                .default_value(DEFAULT_HTTP_HOST)
                .help("Address of the ops HTTP server (/healthz, /readyz, /metrics).")
        })
        .mut_arg("http_port", |a| {
            a.env("ERP_SIM_HTTP_PORT")
                .default_value(DEFAULT_HTTP_PORT_TEXT)
        })
        .mut_arg("shutdown_grace_secs", |a| a.default_value("10"))
    })
}

impl RunArgs {
    fn config(&self) -> anyhow::Result<SimConfig> {
        let base = self.delay.map_or_else(Delays::dev, Delays::uniform);
        let pick = |o: Option<Duration>, d: Duration| o.unwrap_or(d);
        let delays = Delays {
            auto_pay: pick(self.auto_pay_delay, base.auto_pay),
            audit: pick(self.audit_delay, base.audit),
            stock: pick(self.stock_delay, base.stock),
            ship: pick(self.ship_delay, base.ship),
            deliver: pick(self.deliver_delay, base.deliver),
            invoice: pick(self.invoice_delay, base.invoice),
            create_answer: pick(self.create_answer_delay, base.create_answer),
            approve: pick(self.approve_delay, base.approve),
            sent_back: pick(self.sent_back_delay, base.sent_back),
            received: pick(self.received_delay, base.received),
            complete: pick(self.complete_delay, base.complete),
        };
        Ok(SimConfig {
            service: self.service.clone(),
            runtime: self.runtime.config(&self.service)?,
            delays,
            reject_rate: self.reject_rate,
            address_change_rate: self.address_change_rate,
            auto_pay: self.auto_pay,
            unpaid_cancel_after: self.unpaid_cancel_after,
            express_id: self.express_id,
            invoice_base_url: self.invoice_base_url.trim_end_matches('/').to_owned(),
            only_uids: (!self.only_uids.is_empty())
                .then(|| self.only_uids.iter().copied().collect::<BTreeSet<i64>>()),
            ..SimConfig::local()
        })
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if args.create_database {
        orderbus_runtime::create_database_if_missing(config.runtime.database_url.expose()).await?;
    }
    let sim = ErpSim::start(config).await?;
    orderbus_runtime::cancel_on_signal(sim.shutdown_token());
    sim.wait().await?;
    Ok(())
}

async fn publish_cmd(args: PublishArgs) -> anyhow::Result<()> {
    let body = match &args.file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let sent = publish(
        &args.broker.amqp_url,
        &args.app_id,
        &args.routing_key,
        &body,
        args.timeout,
    )
    .await?;
    println!(
        "published {} message_id={} correlation_id={} (erp-sim stand-in, confirmed by the broker)",
        sent.routing_key,
        sent.message_id,
        sent.correlation_id.as_deref().unwrap_or("-")
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Publish(args) => publish_cmd(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orderbus-erp-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["orderbus-erp-sim", "run"];
        all.extend_from_slice(args);
        let matches = command().try_get_matches_from(all).expect("parses");
        match Cli::from_arg_matches(&matches).expect("matches").command {
            Command::Run(args) => *args,
            Command::Publish(_) => panic!("not run"),
        }
    }

    #[test]
    fn run_defaults_are_the_stand_ins() {
        let config = run_args(&[]).config().expect("config");
        let local = SimConfig::local();
        assert_eq!(config.runtime.http_addr, local.runtime.http_addr);
        assert_eq!(config.runtime.database_url, local.runtime.database_url);
        assert_eq!(config.runtime.shutdown_grace, local.runtime.shutdown_grace);
        let tuned = run_args(&["--http-port", "0", "--reject-rate", "1"])
            .config()
            .expect("config");
        assert_eq!(tuned.runtime.http_addr.port(), 0);
        assert_eq!(tuned.reject_rate, 1.0);
    }
}
