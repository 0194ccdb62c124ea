//! The process's stop signals: SIGTERM (Kubernetes, `make run`) and SIGINT (Ctrl-C).

use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT and returns its name.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => return "SIGTERM",
                    _ = ctrl_c() => return "SIGINT",
                }
            }
            Err(e) => tracing::warn!(error = %e, "no SIGTERM handler; SIGINT only"),
        }
    }
    ctrl_c().await;
    "SIGINT"
}

async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "no SIGINT handler");
        std::future::pending::<()>().await;
    }
}

/// Cancels `token` on the first SIGTERM/SIGINT (spawned; returns at once).
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let which = shutdown_signal().await;
        tracing::info!(signal = which, "stopping");
        token.cancel();
    });
}
