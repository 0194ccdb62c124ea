//! The handler contract: untyped [`Handler`] (object-safe, boxed future) and typed
//! [`MessageHandler`] (a plain `async fn`), joined by the [`typed`] adapter.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::delivery::Delivery;
use crate::error::HandlerError;

pub type HandlerFuture<'a> = BoxFuture<'a, Result<(), HandlerError>>;

/// A message handler. It runs inside the transaction the kit opened (the inbox row is written
/// in the same transaction and the kit commits, then acks). Enqueue outgoing messages with
/// [`crate::Outbox`] on the same `conn`.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        delivery: &'a Delivery,
        conn: &'a mut PgConnection,
    ) -> HandlerFuture<'a>;

    /// What a delivery's ordering is about (the order code), read from its body, for
    /// subscriptions with several partitions: messages with the same key are always handled in
    /// one partition, in arrival order. `None` (the default): the AMQP `correlation_id` decides,
    /// and without one the message goes to the first partition.
    fn partition_key(&self, _body: &[u8]) -> Option<String> {
        None
    }
}

/// A handler for one message type, decoded before the call. Implement it with a plain
/// `async fn handle(&self, message: M, delivery: &Delivery, conn: &mut PgConnection) ->
/// Result<(), HandlerError>`; only the type-erasing adapter ([`typed`]) boxes the future.
pub trait MessageHandler<M>: Send + Sync + 'static {
    fn handle(
        &self,
        message: M,
        delivery: &Delivery,
        conn: &mut PgConnection,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

struct Typed<M, H> {
    handler: H,
    decode: fn(&[u8]) -> Result<M, String>,
    key: fn(&M) -> Option<String>,
}

impl<M: Send + Sync + 'static, H: MessageHandler<M>> Handler for Typed<M, H> {
    fn handle<'a>(
        &'a self,
        delivery: &'a Delivery,
        conn: &'a mut PgConnection,
    ) -> HandlerFuture<'a> {
        match (self.decode)(&delivery.body) {
            Ok(m) => Box::pin(self.handler.handle(m, delivery, conn)),
            Err(e) => Box::pin(async move { Err(HandlerError::park(format!("undecodable: {e}"))) }),
        }
    }

    fn partition_key(&self, body: &[u8]) -> Option<String> {
        (self.decode)(body).ok().and_then(|m| (self.key)(&m))
    }
}

/// Adapts a typed handler: a decode failure parks with the decoder's message (for contract
/// messages the contracts' `decode` names the JSON path of the bad field).
pub fn typed<M, H>(handler: H) -> Arc<dyn Handler>
where
    M: orderbus_contracts::Message,
    H: MessageHandler<M>,
{
    fn decode<M: orderbus_contracts::Message>(body: &[u8]) -> Result<M, String> {
        orderbus_contracts::decode::<M>(body).map_err(|e| e.to_string())
    }
    Arc::new(Typed {
        handler,
        decode: decode::<M>,
        key: <M as orderbus_contracts::Message>::correlation_id,
    })
}

/// Like [`typed`] with a custom decoder (for bodies that are not contract messages).
pub fn typed_with<M, H>(decode: fn(&[u8]) -> Result<M, String>, handler: H) -> Arc<dyn Handler>
where
    M: Send + Sync + 'static,
    H: MessageHandler<M>,
{
    Arc::new(Typed {
        handler,
        decode,
        key: |_| None,
    })
}
