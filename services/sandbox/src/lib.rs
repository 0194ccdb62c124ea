//! # orderbus-sandbox — development and test only
//!
//! Serves the simulators of every partner orderbus talks to over HTTP, each on its own port, so
//! the whole stack runs offline: SweetTracker, Sinopac QPay, Frotel's three mirrors (one shared
//! state, a fault switch each) and a SHOPLINE sender that posts signed logistics reports. It is
//! never deployed to production; the simulators' behaviour and fault switches are documented in
//! each provider crate (`shared/<partner>`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where each simulator listens. Port 0 picks a free port (tests).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub host: String,
    pub sweettracker_port: u16,
    pub sinopac_port: u16,
    pub frotel_ports: [u16; 3],
    pub shopline_port: u16,
    /// Where the SHOPLINE sender posts logistics reports (our tracking service's webhook).
    pub shopline_target_url: String,
    /// Real time between two SweetTracker callbacks of one invoice.
    pub sweettracker_step: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            sweettracker_port: 7101,
            sinopac_port: 7102,
            frotel_ports: [7103, 7104, 7105],
            shopline_port: 7106,
            shopline_target_url: "http://127.0.0.1:8083/webhooks/shopline/logistics".into(),
            sweettracker_step: Duration::from_secs(5),
        }
    }
}

/// One simulator that is being served.
#[derive(Debug, Clone)]
pub struct Served {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// What the client should use as its base URL, and what else is there.
    pub note: String,
}

impl Served {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("SHOPLINE sender: {0}")]
    Shopline(String),
}

/// The running sandbox: the addresses it serves and a handle to stop it.
pub struct Sandbox {
    pub served: Vec<Served>,
    pub sinopac: orderbus_sinopac::sim::Simulator,
    pub sweettracker: orderbus_sweettracker::sim::Simulator,
    pub frotel: orderbus_frotel::sim::Simulator,
    pub shopline: orderbus_shopline::sim::Simulator,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What one port serves.
enum App {
    Router(Router),
    /// Frotel mirror `i`, served by the simulator itself (it closes the socket while down).
    FrotelMirror(usize),
}

impl Sandbox {
    /// Binds every port and starts serving; returns once all listeners are bound.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let sweettracker =
            orderbus_sweettracker::sim::Simulator::new(orderbus_sweettracker::sim::SimConfig {
                step_interval: config.sweettracker_step,
                ..Default::default()
            });
        let sinopac =
            orderbus_sinopac::sim::Simulator::new(orderbus_sinopac::sim::SimConfig::default());
        let frotel =
            orderbus_frotel::sim::Simulator::new(orderbus_frotel::sim::SimConfig::default());
        let shopline =
            orderbus_shopline::sim::Simulator::new(orderbus_shopline::sim::SenderConfig {
                target_url: config.shopline_target_url.clone(),
                ..Default::default()
            })
            .map_err(|e| SandboxError::Shopline(e.to_string()))?;

        let mut routes: Vec<(&'static str, u16, App, String)> = vec![
            (
                "sweettracker",
                config.sweettracker_port,
                App::Router(sweettracker.router()),
                "POST /add_invoice; admin GET /__sim/registrations, GET|PUT /__sim/faults".into(),
            ),
            (
                "sinopac",
                config.sinopac_port,
                App::Router(sinopac.router()),
                "POST /Nonce, POST /Order (shop NA0249_001, demo keys); admin /__sim/orders, /__sim/faults".into(),
            ),
        ];
        for (i, port) in config.frotel_ports.iter().enumerate() {
            let name = ["frotel-mirror-1", "frotel-mirror-2", "frotel-mirror-3"][i];
            routes.push((
                name,
                *port,
                App::FrotelMirror(i),
                "Frotel web service (shared state); admin /__sim/".into(),
            ));
        }
        routes.push((
            "shopline",
            config.shopline_port,
            App::Router(shopline.router()),
            format!("sender posting signed reports to {}; POST /__sim/send, /__sim/waybill, GET /__sim/history", config.shopline_target_url),
        ));

        let shutdown = CancellationToken::new();
        let mut served = Vec::new();
        let mut tasks = Vec::new();
        for (name, port, app, note) in routes {
            let addr = format!("{}:{port}", config.host);
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|source| SandboxError::Bind { addr, source })?;
            let stop = shutdown.clone();
            let frotel = frotel.clone();
            tasks.push(tokio::spawn(async move {
                let served = match app {
                    App::Router(router) => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(async move { stop.cancelled().await })
                            .await
                    }
                    // The simulator owns a mirror's listener, so a mirror switched `down`
                    // refuses connections: the client knows nothing was sent.
                    App::FrotelMirror(i) => tokio::select! {
                        r = frotel.serve_mirror(i, listener) => r,
                        () = stop.cancelled() => Ok(()),
                    },
                };
                if let Err(e) = served {
                    tracing::error!(simulator = name, error = %e, "simulator stopped");
                }
            }));
            served.push(Served {
                name,
                addr: local,
                note,
            });
        }
        Ok(Sandbox {
            served,
            sinopac,
            sweettracker,
            frotel,
            shopline,
            shutdown,
            tasks,
        })
    }

    /// The address of the named simulator (`sinopac`, `frotel-mirror-2`, …).
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.served.iter().find(|s| s.name == name).map(|s| s.addr)
    }

    /// Stops every listener and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
