//! The transactional outbox and its relay.
//!
//! [`enqueue`] writes an event in the caller's transaction, and [`commit`]
//! commits it and wakes the relays of this process. The relay publishes
//! unsent rows in id order with an idempotent producer (`acks=all`) and
//! marks them sent. Events of one order are written by transactions that
//! lock that order one after another, so their ids are in the order's own
//! order, and publishing by id keeps it.
//!
//! The relay also looks every `OUTBOX_POLL_MS`: that is how it finds rows
//! committed by another replica, or by a process that crashed before its
//! wake-up. No `NOTIFY` wakes it, because a notifying commit holds a lock
//! of the whole PostgreSQL cluster until it is flushed, so such commits, in
//! every database, went one at a time (docs/saga.md has the measurement).
//!
//! Only one relay publishes at a time, however many replicas run: each holds
//! out for a session-level advisory lock and the holder publishes; if it
//! dies its connection closes, the lock is free, and a standby takes over.
//! A crash between publish and marking re-publishes a few events; consumers
//! are idempotent (the inbox), so that is harmless, while losing one is not.

use std::sync::LazyLock;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::Event;

/// Rung by [`commit`]: every relay of this process subscribes.
static WAKE: LazyLock<watch::Sender<()>> = LazyLock::new(|| watch::Sender::new(()));
/// The advisory lock key of the one active relay per database.
const RELAY_LOCK: i64 = 0x6d69_6e69_7368_6f70; // "minishop"
/// How often the leader updates the backlog gauges.
const BACKLOG_REPORT: Duration = Duration::from_secs(1);

/// Writes `event` into the outbox as part of `tx`, with the current span's
/// trace context, which the relay sends as the `traceparent` header so the
/// consumers' spans continue this trace.
#[tracing::instrument(name = "INSERT outbox", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn enqueue(tx: &mut Transaction<'_, Postgres>, event: &Event) -> Result<(), sqlx::Error> {
    let traceparent = crate::telemetry::current_traceparent();
    let payload = serde_json::to_string(event)
        .map_err(|e| sqlx::Error::Encode(format!("event {}: {e}", event.event_id).into()))?;
    sqlx::query(
        "INSERT INTO outbox (event_id, order_id, event_type, payload, traceparent) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.event_id)
    .bind(event.order_id)
    .bind(event.payload.event_type())
    .bind(payload)
    .bind(traceparent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Commits `tx`, which may hold events [`enqueue`]d, and wakes this
/// process's relays so they publish without waiting for their next look.
pub async fn commit(tx: Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    tx.commit().await?;
    WAKE.send_replace(());
    Ok(())
}

/// How the relay behaves.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The topic events go to.
    pub topic: String,
    /// How often to look for rows nobody woke the relay for (another
    /// replica's, a restart's): the upper bound on publish delay.
    pub poll_interval: Duration,
    /// How long sent rows are kept before they are pruned.
    pub retention: Duration,
    /// The most rows read and published per round: the relay's backlog in
    /// memory (rows, their payloads, the sends awaiting their acks).
    pub batch: u32,
    /// The service's key: every event is published with its signature
    /// ([`super::signing`]). A service without one (it produces nothing)
    /// publishes unsigned, which every consumer refuses.
    pub signer: Option<super::signing::EventSigner>,
}

/// Why the relay stopped publishing for now (it retries after a poll interval).
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("the outbox's database failed")]
    Database(#[from] sqlx::Error),
    #[error("the broker did not take an event")]
    Publish(#[source] rdkafka::error::KafkaError),
}

/// Publishes the outbox until `shutdown`.
pub async fn run_relay(
    pool: PgPool,
    producer: FutureProducer,
    config: RelayConfig,
    metrics: super::KafkaMetrics,
    shutdown: CancellationToken,
) {
    let relay = Relay {
        pool,
        producer,
        config,
        metrics,
    };
    relay.run(&shutdown).await;
}

/// What the relay publishes from and to.
struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    config: RelayConfig,
    metrics: super::KafkaMetrics,
}

impl Relay {
    async fn run(&self, shutdown: &CancellationToken) {
        let config = &self.config;
        while !shutdown.is_cancelled() {
            self.report_backlog().await;
            match self.while_leader(shutdown).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::app::with_causes(&e), "outbox relay interrupted; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Takes the relay lock if it is free and publishes while holding it.
    async fn while_leader(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let mut lock_conn = self.pool.acquire().await?;
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *lock_conn)
            .await?;
        if !leader {
            return Ok(()); // another replica publishes; stand by
        }
        tracing::info!("this replica now runs the outbox relay");
        let result = self.publish_loop(shutdown).await;
        // Dropping the connection back into the pool would keep the lock: release it.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(RELAY_LOCK)
            .execute(&mut *lock_conn)
            .await;
        result
    }

    async fn publish_loop(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let config = &self.config;
        let mut woken = WAKE.subscribe();
        let long_ago = tokio::time::Instant::now() - Duration::from_secs(3600);
        let (mut last_prune, mut last_report) = (long_ago, long_ago);
        while !shutdown.is_cancelled() {
            while self.publish_batch().await? == config.batch as usize {}
            // At most once a second: under load the loop turns per commit, and
            // the gauges need no more.
            if last_report.elapsed() >= BACKLOG_REPORT {
                self.report_backlog().await;
                last_report = tokio::time::Instant::now();
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                self.prune().await;
                last_prune = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                // (The sender is a static: it is never dropped.) Commits
                // made while the last batch was being published are one
                // wake-up, not one each.
                _ = woken.changed() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
            }
        }
        Ok(())
    }

    /// Publishes one batch of unsent rows in id order; returns how many were
    /// published. Stops at the first failure so nothing is marked out of order.
    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let (pool, metrics, topic) = (&self.pool, &self.metrics, &self.config.topic);
        let rows = sqlx::query(
            "SELECT id, event_id, order_id, event_type, payload, traceparent FROM outbox \
         WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(self.config.batch))
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // (type, id, key, payload, headers), owned here because the sends borrow them.
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: uuid::Uuid = row.get("event_id");
            let event_type: String = row.get("event_type");
            let traceparent: Option<String> = row.get("traceparent");
            let event_id = event_id.to_string();
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_type",
                    value: Some(event_type.as_str()),
                })
                .insert(Header {
                    key: "event_id",
                    value: Some(event_id.as_str()),
                });
            if let Some(tp) = &traceparent {
                headers = headers.insert(Header {
                    key: "traceparent",
                    value: Some(tp.as_str()),
                });
            }
            let payload: String = row.get("payload");
            if let Some(signer) = &self.config.signer {
                headers = signer.sign_headers(headers, payload.as_bytes());
            }
            let key = row.get::<i64, _>("order_id").to_string();
            messages.push((
                event_type.clone(),
                row.get::<i64, _>("id"),
                key,
                payload,
                headers,
            ));
        }
        // Queued in id order; the idempotent producer keeps that order per partition.
        let sends = messages.iter().map(|(_, _, key, payload, headers)| {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            self.producer.send(record, Duration::from_secs(30))
        });
        let outcomes = join_all(sends).await;
        let mut sent = Vec::with_capacity(messages.len());
        let mut failure = None;
        for ((event_type, id, ..), outcome) in messages.iter().zip(outcomes) {
            match outcome {
                Ok(_) if failure.is_none() => {
                    sent.push(*id);
                    metrics.produced.with_label_values(&[event_type]).inc();
                }
                Ok(_) => {}
                Err((e, _)) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if !sent.is_empty() {
            sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
                .bind(&sent)
                .execute(pool)
                .await?;
        }
        match failure {
            Some(e) => Err(RelayError::Publish(e)),
            None => Ok(sent.len()),
        }
    }

    async fn prune(&self) {
        let result =
            sqlx::query("DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)")
                .bind(self.config.retention.as_secs_f64())
                .execute(&self.pool)
                .await;
        match result {
            Ok(r) if r.rows_affected() > 0 => {
                tracing::info!(rows = r.rows_affected(), "pruned sent outbox rows")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the outbox failed"),
        }
    }

    /// Updates the backlog gauges (a failed look leaves them as they were).
    async fn report_backlog(&self) {
        if let Ok((unsent, oldest)) = backlog(&self.pool).await {
            self.metrics.outbox_unsent.set(unsent);
            self.metrics.outbox_oldest_seconds.set(oldest);
        }
    }
}

/// How many events wait to be published, and the age of the oldest (seconds).
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await
}
