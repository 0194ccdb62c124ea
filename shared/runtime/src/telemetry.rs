//! Tracing setup: human or JSON logs, filter from `RUST_LOG` (default `info`). JSON lines carry
//! the current span's fields (`span`) and every enclosing span (`spans`), so the `trace_id` and
//! `request_id` of a request or message are on each line logged inside it.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::LogFormat;

/// The JSON log layer, writing to `writer` (stdout in services; a buffer in tests).
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(json_layer(std::io::stdout)).try_init(),
        LogFormat::Human => registry.with(fmt::layer()).try_init(),
    };
    // Already installed (another test or a second call): keep the first.
    let _ = result;
}
