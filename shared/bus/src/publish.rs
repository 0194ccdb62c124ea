//! Confirmed, mandatory publishing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use deadpool_lapin::lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm,
};
use serde::Serialize;
use uuid::Uuid;

use crate::error::PublishError;
use crate::names::TOPIC_EXCHANGE;

pub use crate::trace::TRACEPARENT;

/// A message ready to publish. The body is exactly the contract's JSON (no envelope).
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingMessage {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub message_id: String,
    pub correlation_id: Option<String>,
    /// Extra string headers (traceparent is one of them).
    pub headers: BTreeMap<String, String>,
    /// Unix seconds; `None` = now at publish time.
    pub timestamp: Option<u64>,
}

impl OutgoingMessage {
    /// A message to `amq.topic` with a fresh UUID message id and a traceparent that continues
    /// the current trace context ([`crate::trace::current`]) or starts a new trace.
    pub fn new(routing_key: impl Into<String>, body: Vec<u8>) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert(TRACEPARENT.to_owned(), new_traceparent(None));
        Self {
            exchange: TOPIC_EXCHANGE.to_owned(),
            routing_key: routing_key.into(),
            body,
            message_id: Uuid::new_v4().to_string(),
            correlation_id: None,
            headers,
            timestamp: None,
        }
    }

    /// Serializes `body` with serde_json.
    pub fn json<T: Serialize + ?Sized>(
        routing_key: impl Into<String>,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(routing_key, serde_json::to_vec(body)?))
    }

    pub fn correlation_id(mut self, id: Option<String>) -> Self {
        self.correlation_id = id;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Continue the trace of an incoming message (same trace id, new span id).
    pub fn child_of(mut self, parent_traceparent: Option<&str>) -> Self {
        self.headers
            .insert(TRACEPARENT.to_owned(), new_traceparent(parent_traceparent));
        self
    }

    pub(crate) fn properties(&self, app_id: &str) -> BasicProperties {
        let ts = self
            .timestamp
            .unwrap_or_else(|| chrono::Utc::now().timestamp().max(0) as u64);
        let mut headers = FieldTable::default();
        for (k, v) in &self.headers {
            headers.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(self.message_id.as_str()))
            .with_timestamp(ts)
            .with_app_id(ShortString::from(app_id))
            .with_content_type(ShortString::from("application/json"))
            .with_headers(headers);
        if let Some(c) = &self.correlation_id {
            props = props.with_correlation_id(ShortString::from(c.as_str()));
        }
        props
    }
}

/// A W3C traceparent: a child of `parent` (same trace id), else of the current trace context,
/// else a new trace.
pub fn new_traceparent(parent: Option<&str>) -> String {
    crate::trace::child_traceparent(parent)
}

/// A publishing channel in confirm mode. Every publish is `mandatory`; only an `Ack` without a
/// returned message counts as success.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    app_id: String,
    timeout: Duration,
}

impl Publisher {
    /// Closes the publishing channel (see [`crate::conn::close_channel_quietly`]).
    pub async fn close(&self) {
        crate::conn::close_channel_quietly(&self.channel).await;
    }

    /// Opens a dedicated channel on `conn` and puts it in confirm mode.
    pub async fn open(
        conn: &Connection,
        app_id: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, PublishError> {
        let channel = tokio::time::timeout(timeout, conn.create_channel())
            .await
            .map_err(|_| PublishError::Timeout(timeout))??;
        tokio::time::timeout(
            timeout,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|_| PublishError::Timeout(timeout))??;
        Ok(Self {
            channel,
            app_id: app_id.into(),
            timeout,
        })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, msg: &OutgoingMessage) -> Result<(), PublishError> {
        self.publish_raw(
            &msg.exchange,
            &msg.routing_key,
            &msg.body,
            msg.properties(&self.app_id),
        )
        .await
    }

    /// Publishes with explicit properties (used for retry/park copies).
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let id = props.message_id().as_ref().map(|m| m.as_str().to_owned());
        let confirm = self.start(exchange, routing_key, body, props).await;
        let pending = PendingConfirms {
            pending: vec![(id, confirm)],
            timeout: self.timeout,
        };
        pending
            .wait()
            .await
            .pop()
            .unwrap_or(Err(PublishError::ConfirmNotRequested))
    }

    /// Publishes a window of messages, then awaits all their confirms (never one publish then
    /// one wait). Results are in input order.
    pub async fn publish_many(&self, msgs: &[OutgoingMessage]) -> Vec<Result<(), PublishError>> {
        let refs: Vec<&OutgoingMessage> = msgs.iter().collect();
        self.start_many(&refs).await.wait().await
    }

    /// Publishes a window of messages without waiting for their confirms, so the caller can
    /// prepare the next window meanwhile; [`PendingConfirms::wait`] gives the results in input
    /// order.
    pub async fn start_many(&self, msgs: &[&OutgoingMessage]) -> PendingConfirms {
        let mut pending = Vec::with_capacity(msgs.len());
        for m in msgs {
            let confirm = self
                .start(
                    &m.exchange,
                    &m.routing_key,
                    &m.body,
                    m.properties(&self.app_id),
                )
                .await;
            pending.push((Some(m.message_id.clone()), confirm));
        }
        PendingConfirms {
            pending,
            timeout: self.timeout,
        }
    }

    /// Publishes a window of copies with explicit properties (the sequencer's forwards)
    /// without waiting; one exchange per copy, routed by its fanout binding (the routing key is
    /// the exchange's name, for the management UI). See [`Publisher::start_many`].
    pub(crate) async fn start_raw_many(
        &self,
        copies: Vec<(&str, &[u8], BasicProperties)>,
    ) -> PendingConfirms {
        let mut pending = Vec::with_capacity(copies.len());
        for (exchange, body, props) in copies {
            let id = props.message_id().as_ref().map(|m| m.as_str().to_owned());
            let confirm = self.start(exchange, exchange, body, props).await;
            pending.push((id, confirm));
        }
        PendingConfirms {
            pending,
            timeout: self.timeout,
        }
    }

    async fn start(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<PublisherConfirm, PublishError> {
        let exchange = ShortString::try_new(exchange).map_err(|e| PublishError::Invalid {
            what: "exchange name",
            source: e.into(),
        })?;
        let routing_key = ShortString::try_new(routing_key).map_err(|e| PublishError::Invalid {
            what: "routing key",
            source: e.into(),
        })?;
        let fut = self.channel.basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props,
        );
        Ok(tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| PublishError::Timeout(self.timeout))??)
    }
}

/// Confirms of a window published with [`Publisher::start_many`].
///
/// lapin hands a `basic.return` to whichever confirm of the channel completes next (on a
/// multiple ack: an arbitrary one of the range), so a returned message can ride on a sibling's
/// confirm. Returns are therefore matched to messages by `message_id`, which is only exact if
/// the channel has no other unconfirmed publishes meanwhile: one window at a time per channel.
#[must_use = "unawaited confirms are never checked"]
pub struct PendingConfirms {
    pending: Vec<(Option<String>, Result<PublisherConfirm, PublishError>)>,
    timeout: Duration,
}

impl PendingConfirms {
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Awaits every confirm (each bounded by the publisher's timeout); results in input order.
    /// `Ok` only for a positive confirm of a message that was not returned.
    pub async fn wait(self) -> Vec<Result<(), PublishError>> {
        let timeout = self.timeout;
        let (ids, confirms): (Vec<_>, Vec<_>) = self.pending.into_iter().unzip();
        let outcomes = futures::future::join_all(confirms.into_iter().map(|p| async move {
            match p {
                Ok(confirm) => tokio::time::timeout(timeout, confirm)
                    .await
                    .map_err(|_| PublishError::Timeout(timeout))?
                    .map_err(PublishError::from),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut returned: HashMap<String, (u16, String)> = HashMap::new();
        let mut anonymous: Option<(u16, String)> = None;
        for outcome in &outcomes {
            if let Ok(Confirmation::Ack(Some(r)) | Confirmation::Nack(Some(r))) = outcome {
                let why = (r.reply_code, r.reply_text.as_str().to_owned());
                match r.delivery.properties.message_id() {
                    Some(id) => {
                        returned.insert(id.as_str().to_owned(), why);
                    }
                    None => anonymous = Some(why),
                }
            }
        }
        outcomes
            .into_iter()
            .zip(ids)
            .map(|(outcome, id)| {
                let confirmation = outcome?;
                let own_return = id.as_ref().and_then(|id| returned.get(id)).or(
                    // A return we cannot attribute fails every message of the window.
                    anonymous.as_ref(),
                );
                if let Some((reply_code, reply_text)) = own_return {
                    return Err(PublishError::Returned {
                        reply_code: *reply_code,
                        reply_text: reply_text.clone(),
                    });
                }
                match confirmation {
                    Confirmation::Ack(_) => Ok(()),
                    Confirmation::Nack(_) => Err(PublishError::Nacked),
                    Confirmation::NotRequested => Err(PublishError::ConfirmNotRequested),
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_child_keeps_trace_id() {
        let root = new_traceparent(None);
        let child = new_traceparent(Some(&root));
        assert_eq!(root.split('-').nth(1), child.split('-').nth(1));
        assert_ne!(root, child);
        assert_eq!(child.len(), 55);
    }
}
