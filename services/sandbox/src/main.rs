//! `orderbus-sandbox`: serves every partner simulator for local development. Not for production.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use orderbus_runtime::LogArgs;
use orderbus_sandbox::{Sandbox, SandboxConfig};

#[derive(Parser, Debug)]
#[command(
    name = "orderbus-sandbox",
    version,
    about = "DEVELOPMENT/TEST ONLY: serves the SweetTracker, Sinopac QPay, Frotel (3 mirrors) and SHOPLINE simulators",
    long_about = "DEVELOPMENT/TEST ONLY — never deploy this.\n\nServes offline stand-ins for the partners orderbus \
talks to, each on its own port: SweetTracker (tracking registration + callbacks), Sinopac QPay (real crypto, nonces, \
BackendURL pushes), Frotel's three mirrors (one shared state, a fault switch each) and a SHOPLINE sender that posts \
signed logistics reports to our webhook. Fault switches live under /__sim/ on each port; see shared/<partner>/README.md."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "SANDBOX_SWEETTRACKER_PORT", default_value_t = 7101)]
    sweettracker_port: u16,
    #[arg(long, env = "SANDBOX_SINOPAC_PORT", default_value_t = 7102)]
    sinopac_port: u16,
    /// Ports of Frotel's three mirrors.
    #[arg(long, env = "SANDBOX_FROTEL_PORTS", value_delimiter = ',', num_args = 3, default_values_t = [7103, 7104, 7105])]
    frotel_ports: Vec<u16>,
    #[arg(long, env = "SANDBOX_SHOPLINE_PORT", default_value_t = 7106)]
    shopline_port: u16,
    /// Where the SHOPLINE sender posts its signed logistics reports.
    #[arg(
        long,
        env = "SANDBOX_SHOPLINE_TARGET",
        default_value = "http://127.0.0.1:8083/webhooks/shopline/logistics"
    )]
    shopline_target: String,
    /// Seconds between two SweetTracker callbacks of one invoice.
    #[arg(long, env = "SANDBOX_SWEETTRACKER_STEP_SECS", default_value_t = 5)]
    sweettracker_step_secs: u64,
    /// The runtime's log settings (the sandbox uses no broker or database).
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    orderbus_runtime::init_tracing(args.log.log_format);
    let frotel_ports = match <[u16; 3]>::try_from(args.frotel_ports.as_slice()) {
        Ok(p) => p,
        Err(_) => {
            eprintln!("--frotel-ports needs exactly three ports");
            return ExitCode::from(2);
        }
    };
    let config = SandboxConfig {
        host: args.host,
        sweettracker_port: args.sweettracker_port,
        sinopac_port: args.sinopac_port,
        frotel_ports,
        shopline_port: args.shopline_port,
        shopline_target_url: args.shopline_target,
        sweettracker_step: Duration::from_secs(args.sweettracker_step_secs),
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("orderbus-sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("orderbus-sandbox (development/test only) serves:");
    for s in &sandbox.served {
        println!("  {:<16} {:<24} {}", s.name, s.base_url(), s.note);
    }
    orderbus_runtime::shutdown_signal().await;
    println!("orderbus-sandbox: stopping");
    sandbox.stop().await;
    ExitCode::SUCCESS
}
