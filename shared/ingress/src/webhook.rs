//! The webhook pipeline: read the raw body under a limit → verify → claim the dedupe key in a
//! transaction → run the effect in it → store the reply → log → commit → reply.
//!
//! The log row of a request whose effect commits is written in the effect's transaction: one
//! commit (one WAL flush) per request, and a committed effect always has its log row. Requests
//! refused before or during the effect are logged on their own afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use orderbus_bus::trace::{in_context, TRACEPARENT};
use orderbus_bus::TraceContext;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::Instrument;

use crate::body::{read_limited, BodyError};
use crate::config::{IngressConfig, REDACTED};
use crate::effect::{Effect, EffectError, Outcome};
use crate::reply::{json_error, Rejection, RejectionKind, Replies, Reply, ReplyContext};
use crate::request::{Inbound, InboundRequest};
use crate::store::{self, Claim, LogEntry};
use crate::verify::{Verdict, Verifier};

/// One webhook route: a partner, a path template, its verifier, its replies and the effect.
#[derive(Clone)]
pub struct Webhook {
    partner: String,
    path: String,
    verifier: Arc<dyn Verifier>,
    replies: Arc<dyn Replies>,
    effect: Arc<dyn Effect>,
    accept_get: bool,
}

impl Webhook {
    /// A `POST` route at `path` (axum syntax, e.g. `/webhooks/sweettracker/{token}`).
    pub fn new(
        partner: impl Into<String>,
        path: impl Into<String>,
        verifier: impl Verifier,
        replies: impl Replies,
        effect: impl Effect,
    ) -> Self {
        Self {
            partner: partner.into(),
            path: path.into(),
            verifier: Arc::new(verifier),
            replies: Arc::new(replies),
            effect: Arc::new(effect),
            accept_get: false,
        }
    }

    /// Also accept `GET` on the route (a browser redirected back by a bank, e.g. Frotel's
    /// callback with `_i` and `sb` in the query). The body is then empty: the verifier should
    /// derive the idempotency key from the query, or every such request dedupes as one.
    pub fn accept_get(mut self) -> Self {
        self.accept_get = true;
        self
    }
}

/// A set of webhook routes sharing one pool and one configuration.
pub struct Ingress {
    pool: PgPool,
    config: IngressConfig,
    webhooks: Vec<Webhook>,
}

impl Ingress {
    /// Routes writing to `pool` (migrated with [`crate::MIGRATOR`]).
    pub fn new(pool: PgPool, config: IngressConfig) -> Self {
        Self {
            pool,
            config,
            webhooks: Vec::new(),
        }
    }

    /// Adds a route.
    pub fn webhook(mut self, webhook: Webhook) -> Self {
        self.webhooks.push(webhook);
        self
    }

    /// The axum router with every route (merge it into the service's router).
    pub fn router(self) -> Router {
        let config = Arc::new(self.config);
        let mut router = Router::new();
        for webhook in self.webhooks {
            let mut logged: Vec<HeaderName> = config.logged_headers.clone();
            let mut redacted: Vec<HeaderName> = config.redacted_headers.clone();
            let verifier = &webhook.verifier;
            for (name, secret) in verifier
                .logged_headers()
                .into_iter()
                .map(|n| (n, false))
                .chain(verifier.credential_headers().into_iter().map(|n| (n, true)))
            {
                if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                    if secret && !redacted.contains(&n) {
                        redacted.push(n.clone());
                    }
                    if !logged.contains(&n) {
                        logged.push(n);
                    }
                }
            }
            let path = webhook.path.clone();
            let method = if webhook.accept_get {
                post(handle).get(handle)
            } else {
                post(handle)
            };
            let endpoint = Arc::new(Endpoint {
                pool: self.pool.clone(),
                config: config.clone(),
                webhook,
                logged,
                redacted,
            });
            router = router.merge(Router::new().route(&path, method).with_state(endpoint));
        }
        router
    }
}

struct Endpoint {
    pool: PgPool,
    config: Arc<IngressConfig>,
    webhook: Webhook,
    /// Request headers recorded in the log...
    logged: Vec<HeaderName>,
    /// ...of which these only as `[redacted]` (credentials, signatures: replay material).
    redacted: Vec<HeaderName>,
}

async fn handle(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let trace = TraceContext::continue_or_new(
        request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let span = tracing::info_span!(
        "webhook",
        partner = %endpoint.webhook.partner,
        route = %endpoint.webhook.path,
        trace_id = %trace.trace_id(),
        verification = tracing::field::Empty,
        dedupe = tracing::field::Empty,
        outcome = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    endpoint.process(request, trace).instrument(span).await
}

/// What every step of one request needs: its reply context, logged headers, clock, deadline.
struct Scope {
    ctx: ReplyContext,
    logged_headers: serde_json::Value,
    started: Instant,
    deadline: tokio::time::Instant,
}

/// What the log row will say about the body.
struct BodySeen {
    head: Bytes,
    len: u64,
    complete: bool,
}

/// The end state of a request, before it becomes a response and a log row.
struct Finished {
    reply: Reply,
    /// The effect's transaction, still open: the reply and the log row go into it, then it
    /// commits.
    pending: Option<Transaction<'static, Postgres>>,
    verification: Verdict,
    verification_detail: Option<String>,
    dedupe: Option<&'static str>,
    dedupe_key: Option<String>,
    outcome: &'static str,
    error: Option<String>,
    order: Option<String>,
}

/// A request refused at some step.
struct Refusal {
    rejection: Rejection,
    /// Internal detail for the log only (may name internals; never sent).
    error: Option<String>,
}

impl Refusal {
    fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            rejection: Rejection::new(kind, message),
            error: None,
        }
    }

    fn internal(kind: RejectionKind, message: &str, error: impl std::fmt::Display) -> Self {
        Self {
            rejection: Rejection::new(kind, message),
            error: Some(error.to_string()),
        }
    }
}

enum Processed {
    Fresh {
        reply: Reply,
        order: Option<String>,
        outcome: &'static str,
        /// Uncommitted (`None` when nothing is left to commit, e.g. a deferred effect).
        tx: Option<Transaction<'static, Postgres>>,
    },
    Replayed {
        reply: Reply,
        order: Option<String>,
    },
}

impl Endpoint {
    async fn process(&self, request: Request, trace: TraceContext) -> Response {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        let (mut parts, body) = request.into_parts();
        let path_params = path_params(&mut parts).await;
        let ctx = ReplyContext {
            partner: self.webhook.partner.clone(),
            trace_id: trace.trace_id().to_owned(),
        };
        let scope = Scope {
            logged_headers: self.logged_headers(&parts.headers),
            ctx,
            started,
            deadline,
        };
        let ctx = &scope.ctx;

        let read = tokio::time::timeout_at(
            deadline,
            read_limited(&parts.headers, body, self.config.body_limit),
        )
        .await;
        let (refusal, seen_body) = match read {
            Ok(Ok(body)) => {
                return self
                    .verify_and_apply_body(parts, path_params, body, trace, &scope)
                    .await
            }
            Ok(Err(BodyError::TooLarge { limit, seen, head })) => (
                Refusal::new(
                    RejectionKind::PayloadTooLarge,
                    format!("body larger than {limit} bytes"),
                ),
                BodySeen {
                    head,
                    len: seen,
                    complete: false,
                },
            ),
            Ok(Err(BodyError::Read { head, source })) => (
                Refusal::internal(
                    RejectionKind::BadRequest,
                    "the body could not be read",
                    &source,
                ),
                BodySeen {
                    len: head.len() as u64,
                    head,
                    complete: false,
                },
            ),
            Err(_) => (
                Refusal::new(
                    RejectionKind::BodyTimeout,
                    format!(
                        "the body did not arrive within {:?}",
                        self.config.request_timeout
                    ),
                ),
                BodySeen {
                    head: Bytes::new(),
                    len: 0,
                    complete: false,
                },
            ),
        };
        let finished = refusal_finished(
            ctx,
            &*self.webhook.replies,
            refusal,
            Verdict::NotChecked,
            None,
        );
        self.finish(finished, seen_body, &scope).await
    }

    /// Everything after the body arrived complete, within the same deadline.
    async fn verify_and_apply_body(
        &self,
        parts: Parts,
        path_params: BTreeMap<String, String>,
        body: Bytes,
        trace: TraceContext,
        scope: &Scope,
    ) -> Response {
        let ctx = &scope.ctx;
        let seen_body = BodySeen {
            head: body.clone(),
            len: body.len() as u64,
            complete: true,
        };
        let inbound = InboundRequest {
            partner: self.webhook.partner.clone(),
            route: self.webhook.path.clone(),
            method: parts.method.clone(),
            headers: parts.headers,
            path_params,
            query: parts.uri.query().map(str::to_owned),
            body,
            trace,
        };
        let finished =
            match tokio::time::timeout_at(scope.deadline, self.verified_and_applied(inbound, ctx))
                .await
            {
                Ok(f) => f,
                Err(_) => refusal_finished(
                    ctx,
                    &*self.webhook.replies,
                    Refusal::new(
                        RejectionKind::Timeout,
                        format!(
                            "not processed within {:?}; retry",
                            self.config.request_timeout
                        ),
                    ),
                    Verdict::NotChecked,
                    None,
                ),
            };
        self.finish(finished, seen_body, scope).await
    }

    async fn verified_and_applied(&self, request: InboundRequest, ctx: &ReplyContext) -> Finished {
        let replies = &*self.webhook.replies;
        let verified = match self.webhook.verifier.verify(&request, &self.pool).await {
            Ok(v) => v,
            Err(e) => {
                let kind = match e.verdict {
                    Verdict::Missing | Verdict::Invalid => RejectionKind::Unauthorized,
                    Verdict::Unavailable => RejectionKind::Unavailable,
                    _ => RejectionKind::BadRequest,
                };
                let error = std::error::Error::source(&e).map(|s| s.to_string());
                let mut finished = refusal_finished(
                    ctx,
                    replies,
                    Refusal {
                        rejection: Rejection::new(kind, e.message.clone()),
                        error,
                    },
                    e.verdict,
                    None,
                );
                finished.verification_detail = Some(e.message);
                return finished;
            }
        };
        let verdict = if verified.unsigned {
            Verdict::Unsigned
        } else {
            Verdict::Passed
        };
        let dedupe_key = verified
            .idempotency_key
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&request.body))));
        let inbound = Inbound {
            request,
            verified,
            dedupe_key: dedupe_key.clone(),
        };
        match self.apply(&inbound, ctx).await {
            Ok(Processed::Fresh {
                reply,
                order,
                outcome,
                tx,
            }) => Finished {
                reply,
                pending: tx,
                verification: verdict,
                verification_detail: None,
                dedupe: Some("first"),
                dedupe_key: Some(dedupe_key),
                outcome,
                error: None,
                order,
            },
            Ok(Processed::Replayed { reply, order }) => Finished {
                reply,
                pending: None,
                verification: verdict,
                verification_detail: None,
                dedupe: Some("duplicate"),
                dedupe_key: Some(dedupe_key),
                outcome: "replayed",
                error: None,
                order,
            },
            Err(refusal) => {
                let dedupe =
                    (refusal.rejection.kind == RejectionKind::InProgress).then_some("in_progress");
                let mut finished = refusal_finished(ctx, replies, refusal, verdict, dedupe);
                finished.dedupe_key = Some(dedupe_key);
                finished.order = inbound.verified.order.clone();
                finished
            }
        }
    }

    /// Claim → effect → reply, in one transaction left open for the reply and the log row.
    async fn apply(&self, inbound: &Inbound, ctx: &ReplyContext) -> Result<Processed, Refusal> {
        let unavailable = |e: &dyn std::fmt::Display| {
            Refusal::internal(
                RejectionKind::Unavailable,
                "temporarily unavailable; retry",
                e,
            )
        };
        let partner = &self.webhook.partner;
        let mut tx = self
            .pool
            .begin_with(store::begin_statement(self.config.duplicate_wait))
            .await
            .map_err(|e| unavailable(&e))?;
        match store::claim(&mut tx, partner, &inbound.dedupe_key, ctx.trace_id.as_str()).await {
            Ok(Claim::First) => {}
            Ok(Claim::Duplicate { reply, order }) => {
                let _ = tx.rollback().await;
                return Ok(Processed::Replayed { reply, order });
            }
            Err(e) if store::is_lock_timeout(&e) => {
                return Err(Refusal::internal(
                    RejectionKind::InProgress,
                    "a request with the same key is being processed; retry",
                    &e,
                ))
            }
            Err(e) => return Err(unavailable(&e)),
        }
        let applied = in_context(
            inbound.request.trace.clone(),
            self.webhook.effect.apply(&mut tx, inbound),
        )
        .await;
        let applied = match applied {
            Ok(a) => a,
            Err(EffectError::BadRequest { message, source }) => {
                let _ = tx.rollback().await;
                return Err(Refusal {
                    rejection: Rejection::new(RejectionKind::BadRequest, message),
                    error: source.map(|s| s.to_string()),
                });
            }
            Err(EffectError::Retry(source)) => {
                let _ = tx.rollback().await;
                return Err(unavailable(&source));
            }
            Err(EffectError::Deferred { code, message }) => {
                let _ = tx.rollback().await;
                let reply = self
                    .webhook
                    .replies
                    .refused(&code, &message, ctx)
                    .map_err(|e| unavailable(&e))?;
                return Ok(Processed::Fresh {
                    reply,
                    order: inbound.verified.order.clone(),
                    outcome: "deferred",
                    tx: None,
                });
            }
        };
        let replies = &*self.webhook.replies;
        let (reply, outcome) = match &applied.outcome {
            Outcome::Accepted => (replies.accepted(ctx), "accepted"),
            Outcome::Refused { code, message } => (replies.refused(code, message, ctx), "refused"),
        };
        let reply = reply.map_err(|e| unavailable(&e))?;
        let order = applied.order.or_else(|| inbound.verified.order.clone());
        Ok(Processed::Fresh {
            reply,
            order,
            outcome,
            tx: Some(tx),
        })
    }

    fn logged_headers(&self, headers: &HeaderMap) -> serde_json::Value {
        let mut out = Vec::new();
        for name in &self.logged {
            for value in headers.get_all(name) {
                let text = if self.redacted.contains(name) {
                    REDACTED.to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                out.push(serde_json::json!([name.as_str(), text]));
            }
        }
        serde_json::Value::Array(out)
    }

    async fn finish(&self, mut finished: Finished, body: BodySeen, scope: &Scope) -> Response {
        let took = scope.started.elapsed();
        let head_len = body.head.len().min(self.config.log_body_limit);
        let mut entry = LogEntry {
            partner: self.webhook.partner.clone(),
            route: self.webhook.path.clone(),
            trace_id: scope.ctx.trace_id.clone(),
            headers: scope.logged_headers.clone(),
            body_head: body.head[..head_len].to_vec(),
            body_len: body.len,
            body_truncated: !body.complete || head_len < body.head.len(),
            body_sha256: body
                .complete
                .then(|| hex::encode(Sha256::digest(&body.head))),
            verification: finished.verification.as_str(),
            verification_detail: finished.verification_detail.take(),
            dedupe: finished.dedupe,
            dedupe_key: finished.dedupe_key.take(),
            outcome: finished.outcome,
            status: finished.reply.status.as_u16(),
            error: finished.error.take(),
            order: finished.order.take(),
            duration: took,
        };
        let committed = match finished.pending.take() {
            Some(tx) => Some(commit_with_log(tx, &finished.reply, &entry).await),
            None => None,
        };
        if let Some(Err(e)) = &committed {
            // Nothing of the effect happened: the partner gets a retryable refusal instead.
            let refusal = Refusal::internal(
                RejectionKind::Unavailable,
                "temporarily unavailable; retry",
                e,
            );
            let failed = refusal_finished(
                &scope.ctx,
                &*self.webhook.replies,
                refusal,
                finished.verification,
                finished.dedupe,
            );
            entry.outcome = failed.outcome;
            entry.status = failed.reply.status.as_u16();
            entry.error = failed.error;
            finished.reply = failed.reply;
        }
        if !matches!(committed, Some(Ok(()))) {
            self.insert_log_alone(&entry).await;
        }
        let status = entry.status;
        let span = tracing::Span::current();
        span.record("verification", entry.verification);
        span.record("dedupe", entry.dedupe.unwrap_or("none"));
        span.record("outcome", entry.outcome);
        span.record("status", status);
        crate::metrics::record(
            &self.webhook.partner,
            entry.verification,
            entry.outcome,
            took,
        );
        if status >= 500 {
            tracing::warn!(
                status,
                error = entry.error.as_deref().unwrap_or(""),
                "webhook failed"
            );
        } else {
            tracing::info!(status, "webhook handled");
        }
        finished.reply.into_response()
    }

    /// The log row of a request with nothing to commit (refused, replayed, failed): on its own,
    /// bounded in time, and a failure is only a warning (the reply is already decided).
    async fn insert_log_alone(&self, entry: &LogEntry) {
        let write = async {
            let mut conn = self.pool.acquire().await?;
            store::insert_log(&mut conn, entry).await
        };
        match tokio::time::timeout(self.config.log_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "ingress log row not written"),
            Err(_) => tracing::warn!("ingress log row not written: timed out"),
        }
    }
}

/// Stores the reply and the log row in the effect's transaction and commits all three.
async fn commit_with_log(
    mut tx: Transaction<'static, Postgres>,
    reply: &Reply,
    entry: &LogEntry,
) -> Result<(), sqlx::Error> {
    store::store_reply_and_log(&mut tx, reply, entry).await?;
    tx.commit().await
}

/// A refusal turned into its reply (through the partner's builder, falling back to a generic
/// JSON error, then to a bare 500 if even that cannot be encoded).
fn refusal_finished(
    ctx: &ReplyContext,
    replies: &dyn Replies,
    refusal: Refusal,
    verification: Verdict,
    dedupe: Option<&'static str>,
) -> Finished {
    let Refusal { rejection, error } = refusal;
    let reply = replies
        .rejected(&rejection, ctx)
        .or_else(|_| json_error(&rejection, &ctx.trace_id))
        .unwrap_or_else(|_| Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: Vec::new(),
            body: Bytes::new(),
        });
    let reply = if rejection.kind.is_retryable() {
        reply.with_default_header("retry-after", "1")
    } else {
        reply
    };
    let outcome = match rejection.kind {
        RejectionKind::InProgress => "busy",
        k if k.status().is_server_error() => "failed",
        _ => "rejected",
    };
    Finished {
        reply,
        pending: None,
        verification,
        verification_detail: None,
        dedupe,
        dedupe_key: None,
        outcome,
        error,
        order: None,
    }
}

async fn path_params(parts: &mut Parts) -> BTreeMap<String, String> {
    match RawPathParams::from_request_parts(parts, &()).await {
        Ok(params) => params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}
