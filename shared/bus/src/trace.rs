//! W3C trace context carried across HTTP requests, outbox rows and AMQP messages.
//!
//! One trace id follows an order through every service: the HTTP layer and the consumer enter a
//! [`TraceContext`] (from the incoming `traceparent`, or a new root) with [`in_context`], every
//! [`crate::OutgoingMessage`] built inside it becomes a child (same trace id, new span id), and
//! the `trace_id` field of the request's or message's span puts the id on every log line.

use std::future::Future;

use rand::Rng;

/// Header (HTTP and AMQP) carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C `traceparent` (version 00): trace id, parent span id, sampled flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
}

impl TraceContext {
    /// A new trace (random ids, never all zero).
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: format!("{:032x}", rng.random::<u128>() | 1),
            span_id: format!("{:016x}", rng.random::<u64>() | 1),
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else (including all-zero ids) is `None`.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        let valid = parts.next().is_none()
            && hex(version, 2)
            && version != "ff"
            && hex(trace_id, 32)
            && hex(span_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        valid.then(|| Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
        })
    }

    /// The context of an incoming `traceparent`, or a new root when it is absent or invalid.
    pub fn continue_or_new(header: Option<&str>) -> Self {
        header
            .and_then(Self::from_traceparent)
            .unwrap_or_else(Self::new_root)
    }

    /// A child span of this context: same trace id, new span id.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: format!("{:016x}", rand::rng().random::<u64>() | 1),
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// The header value (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// Runs `fut` with `ctx` as the current trace context.
pub async fn in_context<F: Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The current trace context, if the caller runs inside [`in_context`].
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A `traceparent` for a new outgoing message: a child of `parent` (an explicit incoming
/// header), else of the current context, else a new trace.
pub fn child_traceparent(parent: Option<&str>) -> String {
    parent
        .and_then(TraceContext::from_traceparent)
        .or_else(current)
        .map_or_else(TraceContext::new_root, |p| p.child())
        .traceparent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_refuses_invalid_headers() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::from_traceparent(ok).expect("valid");
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id(), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(TraceContext::from_traceparent(bad).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn children_keep_the_trace_id_of_the_current_context() {
        let root = TraceContext::new_root();
        let child = in_context(root.clone(), async { child_traceparent(None) }).await;
        let child = TraceContext::from_traceparent(&child).expect("valid child");
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        // Outside any context a new trace starts.
        let other = TraceContext::from_traceparent(&child_traceparent(None)).expect("valid");
        assert_ne!(other.trace_id(), root.trace_id());
        // An explicit parent wins over the current context.
        let explicit = TraceContext::new_root();
        let c = in_context(root, async {
            child_traceparent(Some(&explicit.traceparent()))
        })
        .await;
        assert_eq!(
            TraceContext::from_traceparent(&c).map(|c| c.trace_id().to_owned()),
            Some(explicit.trace_id().to_owned())
        );
    }
}
