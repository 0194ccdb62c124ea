//! Supervised background tasks: run beside HTTP, consumers and relay; restarted with a capped
//! backoff after an error or a panic; cancelled and drained with everything else.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderbus_bus::conn::Backoff;
use orderbus_bus::Health;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a task gets at every (re)start.
#[derive(Clone)]
pub struct TaskContext {
    name: &'static str,
    pool: PgPool,
    health: Health,
    shutdown: CancellationToken,
    readiness: Option<String>,
}

impl TaskContext {
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
    /// Cancelled on shutdown: finish the current unit of work and return `Ok(())`.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
    /// For a task that gates readiness: report a degraded state without failing (the
    /// supervisor sets the flag true at each start and false after each failure).
    pub fn set_ready(&self, ready: bool) {
        if let Some(flag) = &self.readiness {
            self.health.set(flag, ready);
        }
    }
}

/// How a task is supervised.
#[derive(Clone, Debug)]
pub struct TaskOptions {
    /// Whether `/readyz` shows the task (flag `task:<name>`), false while it is failing.
    pub gates_readiness: bool,
    /// First restart delay; doubles per consecutive failure up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            gates_readiness: false,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
        }
    }
}

type TaskError = Box<dyn Error + Send + Sync>;
type TaskFuture = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;
pub(crate) type TaskFactory = Arc<dyn Fn(TaskContext) -> TaskFuture + Send + Sync>;

/// A named task and its factory (called again for every restart).
pub(crate) struct TaskSpec {
    pub name: &'static str,
    pub options: TaskOptions,
    pub factory: TaskFactory,
}

impl TaskSpec {
    pub fn new<F, Fut, E>(name: &'static str, options: TaskOptions, factory: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Error + Send + Sync + 'static,
    {
        let factory: TaskFactory = Arc::new(move |ctx| {
            let fut = factory(ctx);
            Box::pin(async move { fut.await.map_err(|e| Box::new(e) as TaskError) })
        });
        Self {
            name,
            options,
            factory,
        }
    }

    pub fn readiness_flag(&self) -> Option<String> {
        self.options
            .gates_readiness
            .then(|| format!("task:{}", self.name))
    }
}

/// `error: cause: cause…`, skipping a cause whose text the previous message already ends
/// with (errors that print their source).
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs `spec` until `shutdown`, restarting it after every error, panic or early return.
pub(crate) async fn supervise_task(
    spec: TaskSpec,
    pool: PgPool,
    health: Health,
    shutdown: CancellationToken,
) {
    let readiness = spec.readiness_flag();
    let mut backoff = Backoff::new(spec.options.backoff_base, spec.options.backoff_cap);
    loop {
        let ctx = TaskContext {
            name: spec.name,
            pool: pool.clone(),
            health: health.clone(),
            shutdown: shutdown.clone(),
            readiness: readiness.clone(),
        };
        ctx.set_ready(true);
        let started = Instant::now();
        // Its own JoinSet: a panic is caught as a JoinError, and dropping the set (when the
        // grace period is over and the supervisor is aborted) aborts the attempt too.
        let mut attempt = JoinSet::new();
        attempt.spawn((spec.factory)(ctx.clone()));
        let outcome = attempt.join_next().await;
        if shutdown.is_cancelled() {
            match outcome {
                Some(Ok(Err(e))) => {
                    tracing::warn!(task = spec.name, error = %error_chain(e.as_ref()), "task failed while stopping")
                }
                Some(Err(e)) if e.is_panic() => {
                    tracing::warn!(task = spec.name, panic = %panic_message(e.into_panic()), "task panicked while stopping")
                }
                _ => tracing::debug!(task = spec.name, "task stopped"),
            }
            return;
        }
        ctx.set_ready(false);
        match outcome {
            Some(Ok(Ok(()))) => {
                tracing::warn!(
                    task = spec.name,
                    "task returned before shutdown; restarting"
                )
            }
            Some(Ok(Err(e))) => {
                tracing::error!(task = spec.name, error = %error_chain(e.as_ref()), "task failed; restarting")
            }
            Some(Err(e)) if e.is_panic() => {
                tracing::error!(task = spec.name, panic = %panic_message(e.into_panic()), "task panicked; restarting")
            }
            Some(Err(e)) => {
                tracing::error!(task = spec.name, error = %e, "task aborted; restarting")
            }
            None => {}
        }
        metrics::counter!("orderbus_task_restarts_total", "task" => spec.name).increment(1);
        // An attempt that ran longer than the cap was healthy for a while: start over.
        if started.elapsed() > spec.options.backoff_cap {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("sweep failed: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("plain")]
    struct Plain(#[source] Inner);

    #[test]
    fn chains_list_each_cause_once() {
        assert_eq!(error_chain(&Outer(Inner)), "sweep failed: connection reset");
        assert_eq!(error_chain(&Plain(Inner)), "plain: connection reset");
    }
}
