//! The outbox relay: publishes pending `orderbus_outbox` rows with mandatory + confirms,
//! pipelined over several confirm channels; safe with several replicas.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use sqlx::{postgres::PgListener, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::conn::{close_quietly, connect, Backoff};
use crate::error::{chain, BusError, Chain};
use crate::health::Health;
use crate::inbox::prune_inbox;
use crate::outbox::{self, outbox_lag, Claimed, OUTBOX_CHANNEL};
use crate::publish::{OutgoingMessage, PendingConfirms, Publisher};

/// Relay settings.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Rows claimed and published per round (the confirm window).
    pub batch_size: i64,
    /// Batches published but not yet confirmed at once: the next batch is claimed and
    /// published while earlier batches' confirms are outstanding (1 = stop-and-go).
    pub max_in_flight_batches: usize,
    /// How long a claim is valid: the claiming transaction's
    /// `idle_in_transaction_session_timeout`, so a relay that hangs mid-batch loses its row
    /// locks after it (a crashed relay's locks go with its session at once). Keep it above
    /// `publish_timeout`: a batch waits for its confirms inside the transaction.
    pub lease: Duration,
    /// Periodic sweep for what LISTEN/NOTIFY missed (and for retries that became due). Keep it
    /// well under a minute: a waiting relay's announcement is renewed at each sweep and counts
    /// for a minute.
    pub sweep_interval: Duration,
    /// After announcing that it waits, the relay looks for due rows once more after this long
    /// before it sleeps: a producer that checked for a waiting relay just before the
    /// announcement has committed by then (a commit's WAL flush is far shorter).
    pub idle_recheck: Duration,
    /// For this long after it last found rows the relay polls every `linger_poll` instead of
    /// announcing that it waits: under steady traffic it never announces, so producers commit
    /// without a NOTIFY (and without PostgreSQL's global notify lock).
    pub linger: Duration,
    pub linger_poll: Duration,
    /// Timeout of each publish and each confirm.
    pub publish_timeout: Duration,
    /// Timeout of each DB statement issued by the relay.
    pub db_timeout: Duration,
    /// Cap of the per-row retry backoff after a failed publish.
    pub max_row_backoff: Duration,
    /// Sent rows older than this are deleted.
    pub retention: Duration,
    /// Inbox rows older than this are deleted by the same maintenance step (must exceed the
    /// longest time a duplicate can arrive: retry tiers + redelivery after an outage).
    pub inbox_retention: Duration,
    /// Reconnect backoff of the relay's AMQP connection.
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
}

impl RelayConfig {
    /// Database connections the relay holds at most: its LISTEN connection plus one
    /// transaction per in-flight batch (held from the claim until the batch is marked).
    pub fn pool_connections(&self) -> usize {
        1 + self.max_in_flight_batches.max(1)
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            max_in_flight_batches: 3,
            lease: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            idle_recheck: Duration::from_millis(20),
            linger: Duration::from_secs(1),
            linger_poll: Duration::from_millis(5),
            publish_timeout: Duration::from_secs(10),
            db_timeout: Duration::from_secs(10),
            max_row_backoff: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
            reconnect_base: Duration::from_millis(200),
            reconnect_cap: Duration::from_secs(5),
        }
    }
}

/// How often the relay refreshes its outbox lag gauges.
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Publishes pending outbox rows with mandatory + confirms; safe with several replicas.
pub struct Relay {
    pool: PgPool,
    amqp_url: String,
    app_id: String,
    config: RelayConfig,
    health: Health,
    relay_id: String,
}

/// A claimed batch whose messages are published and whose confirms are outstanding.
struct InFlight {
    /// The claiming transaction: its row locks are the batch's lease; the rows are marked in
    /// it and it commits once they are.
    tx: Transaction<'static, Postgres>,
    rows: Vec<Claimed>,
    confirms: PendingConfirms,
    /// `relay_batch`, from the publish to the last UPDATE of this batch.
    span: tracing::Span,
}

/// What one relay round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
    /// Sent rows with a correlation id: each may have released a younger row of its aggregate.
    pub released: usize,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        amqp_url: impl Into<String>,
        app_id: impl Into<String>,
        health: Health,
    ) -> Self {
        let app_id = app_id.into();
        let relay = Self {
            relay_id: format!("{app_id}-{}", Uuid::new_v4().simple()),
            pool,
            amqp_url: amqp_url.into(),
            app_id,
            config: RelayConfig::default(),
            health,
        };
        // Registered (not ready) at construction; see `Consumers::new`.
        relay.health.set(&relay.health_key(), false);
        relay
    }

    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    fn health_key(&self) -> String {
        format!("relay:{}", self.app_id)
    }

    /// Runs until `shutdown`: rebuilds its connection on any AMQP failure, with capped backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let key = self.health_key();
        self.health.set(&key, false);
        let mut backoff = Backoff::new(self.config.reconnect_base, self.config.reconnect_cap);
        let mut listener = None;
        while !shutdown.is_cancelled() {
            match self
                .generation(&shutdown, &mut listener, &mut backoff)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    self.health.set(&key, false);
                    metrics::counter!("orderbus_connection_rebuilds_total", "role" => "relay")
                        .increment(1);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %Chain(&e), ?delay, "outbox relay: rebuilding connection");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.health.set(&key, false);
        Ok(())
    }

    async fn generation(
        &self,
        shutdown: &CancellationToken,
        listener: &mut Option<PgListener>,
        backoff: &mut Backoff,
    ) -> Result<(), BusError> {
        let conn = connect(
            &self.amqp_url,
            &format!("{} relay", self.app_id),
            self.config.publish_timeout,
        )
        .await?;
        let result = async {
            // One confirm channel per in-flight batch: a channel never has two windows
            // unconfirmed, so returned messages are attributed exactly (see PendingConfirms).
            let mut publishers = Vec::new();
            for _ in 0..self.config.max_in_flight_batches.max(1) {
                publishers.push(
                    Publisher::open(&conn, self.app_id.clone(), self.config.publish_timeout)
                        .await?,
                );
            }
            self.health.set(&self.health_key(), true);
            let mut last_retention = tokio::time::Instant::now();
            let mut last_lag_report: Option<tokio::time::Instant> = None;
            let mut last_found = tokio::time::Instant::now();
            loop {
                // Drain everything that is due, then poll (lingering after traffic) or wait for
                // a NOTIFY or the sweep tick.
                if self.drain(&publishers, shutdown, backoff).await? {
                    last_found = tokio::time::Instant::now();
                }
                if last_lag_report.is_none_or(|t| t.elapsed() >= LAG_REPORT_EVERY) {
                    last_lag_report = Some(tokio::time::Instant::now());
                    self.report_lag().await;
                }
                if last_retention.elapsed() > Duration::from_secs(60) {
                    last_retention = tokio::time::Instant::now();
                    if let Err(e) = self.delete_sent_before(self.config.retention).await {
                        tracing::warn!(error = %Chain(&e), "outbox retention failed");
                    }
                    if let Err(e) = prune_inbox(
                        &self.pool,
                        self.config.inbox_retention,
                        self.config.db_timeout,
                    )
                    .await
                    {
                        tracing::warn!(error = %Chain(&e), "inbox retention failed");
                    }
                }
                if shutdown.is_cancelled() {
                    for p in &publishers {
                        p.close().await;
                    }
                    return Ok(());
                }
                if listener.is_none() {
                    *listener = self.listen().await;
                }
                let lingering = last_found.elapsed() < self.config.linger;
                if lingering {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(self.config.linger_poll) => {}
                    }
                    if !conn.status().connected() {
                        return Err(BusError::ConnectionClosed { role: "relay" });
                    }
                    continue;
                }
                // Producers notify only while a relay is announced as waiting (a NOTIFY costs
                // every committing producer a global lock): announce, look once more, sleep.
                let announced = listener.is_some() && self.announce_waiting().await;
                if announced {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(self.config.idle_recheck) => {}
                    }
                    if self.drain(&publishers, shutdown, backoff).await? {
                        last_found = tokio::time::Instant::now();
                    }
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => {
                            if l.recv().await.is_err() {
                                // Connection lost: the sweep covers us until it is back.
                                *listener = None;
                                std::future::pending::<()>().await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = notified => {}
                    _ = tokio::time::sleep(self.config.sweep_interval) => {}
                }
                if announced {
                    self.withdraw_waiting().await;
                }
                if !conn.status().connected() {
                    return Err(BusError::ConnectionClosed { role: "relay" });
                }
            }
        }
        .await;
        close_quietly(&conn).await;
        result
    }

    async fn listen(&self) -> Option<PgListener> {
        let fut = async {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(OUTBOX_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match tokio::time::timeout(self.config.db_timeout, fut).await {
            Ok(Ok(l)) => Some(l),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "outbox LISTEN unavailable; sweeping only");
                None
            }
            Err(_) => None,
        }
    }

    /// Publishes every due row, keeping up to `max_in_flight_batches` batches unconfirmed (each
    /// on its own publisher channel): the next batch is claimed and published while earlier
    /// confirms are outstanding, and each batch is marked as its own confirms complete. After an error no new batch is claimed, the
    /// batches in flight are still settled (sent or backed off), then the first error is returned.
    async fn drain(
        &self,
        publishers: &[Publisher],
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<bool, BusError> {
        let mut idle: Vec<&Publisher> = publishers.iter().collect();
        let mut found = false;
        let mut in_flight = FuturesUnordered::new();
        let mut more = true;
        let mut first_err: Option<BusError> = None;
        loop {
            if more && first_err.is_none() && !shutdown.is_cancelled() {
                if let Some(publisher) = idle.pop() {
                    let next = self.start_batch(publisher);
                    tokio::pin!(next);
                    // A batch settled during this claim may have released younger rows of its
                    // orders that the claim did not see yet.
                    let mut released = false;
                    // Settle completed batches while the next one is claimed and published.
                    let started = loop {
                        tokio::select! {
                            biased;
                            Some((done, p)) = in_flight.next(), if !in_flight.is_empty() => {
                                idle.push(p);
                                match done {
                                    Ok(RoundStats { released: n, .. }) => {
                                        backoff.reset();
                                        released |= n > 0;
                                    }
                                    Err(e) => {
                                        first_err.get_or_insert(e);
                                    }
                                }
                            }
                            s = &mut next => break s,
                        }
                    };
                    match started {
                        Ok(Some(batch)) => {
                            found = true;
                            more = released || batch.rows.len() >= self.config.batch_size as usize;
                            in_flight
                                .push(async move { (self.finish_batch(batch).await, publisher) });
                        }
                        Ok(None) => {
                            more = released;
                            idle.push(publisher);
                        }
                        Err(e) => {
                            idle.push(publisher);
                            first_err.get_or_insert(e);
                        }
                    }
                    continue;
                }
            }
            match in_flight.next().await {
                Some((done, p)) => {
                    idle.push(p);
                    match done {
                        Ok(RoundStats { released: n, .. }) => {
                            backoff.reset();
                            // Younger rows of the same orders became claimable: claim again.
                            more |= n > 0;
                        }
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                None => break,
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// One stop-and-go round: claims due rows (SKIP LOCKED + lease), publishes them in one
    /// confirm window, marks the positively confirmed ones sent and backs off the others. A
    /// connection-level failure is returned as an error so the caller rebuilds.
    pub async fn round(&self, publisher: &Publisher) -> Result<RoundStats, BusError> {
        match self.start_batch(publisher).await? {
            Some(batch) => self.finish_batch(batch).await,
            None => Ok(RoundStats::default()),
        }
    }

    /// Claims due rows and publishes them without waiting for the confirms.
    async fn start_batch(&self, publisher: &Publisher) -> Result<Option<InFlight>, BusError> {
        let (tx, rows) = self.claim().await?;
        if rows.is_empty() {
            // Read-only: ends without a WAL flush.
            self.db(tx.commit()).await?;
            return Ok(None);
        }
        let span = tracing::info_span!(
            "relay_batch",
            rows = rows.len(),
            relay = %self.relay_id,
            sent = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        // Each message keeps the traceparent stored with its row.
        let msgs: Vec<&OutgoingMessage> = rows.iter().map(|r| &r.msg).collect();
        let confirms = publisher.start_many(&msgs).instrument(span.clone()).await;
        drop(msgs);
        Ok(Some(InFlight {
            tx,
            rows,
            confirms,
            span,
        }))
    }

    /// Awaits a batch's confirms; marks sent only rows with a positive, unreturned confirm (one
    /// UPDATE), backs off all others (one UPDATE).
    async fn finish_batch(&self, batch: InFlight) -> Result<RoundStats, BusError> {
        let span = batch.span.clone();
        self.settle_batch(batch).instrument(span).await
    }

    async fn settle_batch(&self, batch: InFlight) -> Result<RoundStats, BusError> {
        let InFlight {
            mut tx,
            rows,
            confirms,
            span,
        } = batch;
        let results = confirms.wait().await;
        let mut stats = RoundStats {
            claimed: rows.len(),
            ..RoundStats::default()
        };
        let mut sent = Vec::with_capacity(rows.len());
        let (mut failed_ids, mut failed_errors) = (Vec::new(), Vec::new());
        let mut connection_failure = None;
        // Counters once per routing key and batch, not once per message (each `counter!` with a
        // label is a registry lookup).
        let mut published: Vec<(&str, u64)> = Vec::new();
        for (row, res) in rows.iter().zip(results) {
            match res {
                Ok(()) => {
                    sent.push(row.id);
                    if row.msg.correlation_id.is_some() {
                        stats.released += 1;
                    }
                    let key = row.msg.routing_key.as_str();
                    match published.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, n)) => *n += 1,
                        None => published.push((key, 1)),
                    }
                }
                Err(e) => {
                    metrics::counter!("orderbus_publish_failures_total", "routing_key" => row.msg.routing_key.clone()).increment(1);
                    tracing::warn!(id = row.id, routing_key = %row.msg.routing_key, error = %Chain(&e), "outbox publish failed");
                    failed_ids.push(row.id);
                    failed_errors.push(chain(&e));
                    if e.is_connection_failure() {
                        connection_failure.get_or_insert(e);
                    }
                }
            }
        }
        for (key, n) in published {
            metrics::counter!("orderbus_messages_published_total", "routing_key" => key.to_owned())
                .increment(n);
        }
        stats.sent = sent.len();
        stats.failed = failed_ids.len();
        span.record("sent", stats.sent);
        span.record("failed", stats.failed);
        // Both marks and the claim commit together: if any of it fails, every row of the batch
        // is unsent and unlocked again and goes in a later batch (a duplicate publish at worst,
        // which the consumers' inbox absorbs).
        if !sent.is_empty() {
            self.db(outbox::mark_sent(&mut tx, &sent)).await?;
        }
        if !failed_ids.is_empty() {
            self.db(outbox::mark_failed(
                &mut tx,
                &failed_ids,
                &failed_errors,
                self.config.max_row_backoff,
            ))
            .await?;
        }
        self.db(tx.commit()).await?;
        match connection_failure {
            Some(e) => Err(BusError::Publish(e)),
            None => Ok(stats),
        }
    }

    /// Opens the batch's transaction (with the lease as its idle timeout, in the same round
    /// trip as BEGIN) and claims due rows in it.
    async fn claim(&self) -> Result<(Transaction<'static, Postgres>, Vec<Claimed>), BusError> {
        let begin = format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}",
            self.config.lease.as_millis().clamp(1, i32::MAX as u128)
        );
        let mut tx = self
            .db(self.pool.begin_with(sqlx::AssertSqlSafe(begin)))
            .await?;
        let rows = self
            .db(outbox::claim(&mut tx, self.config.batch_size))
            .await?;
        Ok((tx, rows))
    }

    /// Deletes sent rows older than `age`; returns how many.
    pub async fn delete_sent_before(&self, age: Duration) -> Result<u64, BusError> {
        self.db(outbox::delete_sent_before(&self.pool, age)).await
    }

    /// True when the announcement is in place (a failure only means producers do not notify
    /// this relay: the sweep still finds their rows).
    async fn announce_waiting(&self) -> bool {
        match self
            .db(outbox::announce_waiting(&self.pool, &self.relay_id))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %Chain(&e), "outbox relay: could not announce waiting");
                false
            }
        }
    }

    async fn withdraw_waiting(&self) {
        if let Err(e) = self
            .db(outbox::withdraw_waiting(&self.pool, &self.relay_id))
            .await
        {
            // Left in place it only makes producers notify for up to a minute.
            tracing::debug!(error = %Chain(&e), "outbox relay: could not withdraw waiting");
        }
    }

    async fn report_lag(&self) {
        match outbox_lag(&self.pool, self.config.db_timeout).await {
            Ok((pending, lag)) => {
                metrics::gauge!("orderbus_outbox_pending").set(pending as f64);
                metrics::gauge!("orderbus_outbox_lag_seconds").set(lag);
            }
            Err(e) => tracing::debug!(error = %e, "outbox lag query failed"),
        }
    }

    async fn db<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, BusError> {
        tokio::time::timeout(self.config.db_timeout, fut)
            .await
            .map_err(|_| BusError::Timeout {
                what: "outbox query",
                after: self.config.db_timeout,
            })?
            .map_err(BusError::from)
    }
}
