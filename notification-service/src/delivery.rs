//! The worker side: delivery is a queue in PostgreSQL. A worker takes due
//! rows with `FOR UPDATE SKIP LOCKED` (safe with several replicas), sends
//! them concurrently with a timeout each, and reschedules failures with
//! exponential backoff and jitter, so a failing or slow message never holds
//! up the others. After `max_attempts` it is `failed`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use shared::metrics::prometheus::IntCounterVec;
use shared::shutdown::CancellationToken;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;

use crate::notifier::{Message, Notifier};

/// How delivery retries.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    /// `NOTIFY_MAX_ATTEMPTS`: tries before a notification is marked failed.
    pub max_attempts: i32,
    /// `NOTIFY_BACKOFF_MS`: the delay after the first failure; doubles each time.
    pub initial_backoff: Duration,
    /// Longest delay between tries.
    pub max_backoff: Duration,
    /// `NOTIFY_SEND_TIMEOUT_MS`: longest one delivery may take.
    pub send_timeout: Duration,
    /// How often to look for due rows without a wake-up.
    pub poll_interval: Duration,
}

/// Rows taken per round.
const BATCH: i64 = 50;

/// Delivers due notifications until `shutdown`.
pub async fn run_delivery(
    pool: PgPool,
    notifier: Arc<dyn Notifier>,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    outcomes: IntCounterVec,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match deliver_due(&pool, notifier.as_ref(), &config, &outcomes).await {
            Ok(n) if n as i64 == BATCH => continue, // more may be due
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "notification delivery round failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// One round: take due rows, send them concurrently, record each outcome.
async fn deliver_due(
    pool: &PgPool,
    notifier: &dyn Notifier,
    config: &DeliveryConfig,
    outcomes: &IntCounterVec,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, user_id, recipient, subject, body, attempts FROM notifications \
         WHERE status = 'pending' AND next_attempt_at <= now() \
         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let jobs: Vec<(i64, i32, Message)> = rows
        .iter()
        .map(|r| {
            (
                r.get("id"),
                r.get("attempts"),
                Message {
                    user_id: r.get("user_id"),
                    to: r.get("recipient"),
                    subject: r.get("subject"),
                    body: r.get("body"),
                },
            )
        })
        .collect();
    let results = futures::future::join_all(jobs.iter().map(|(_, _, message)| async move {
        match tokio::time::timeout(config.send_timeout, notifier.send(message)).await {
            Ok(r) => r.map_err(|e| shared::app::with_causes(&*e)),
            Err(_) => Err(format!(
                "delivery took longer than {:?}",
                config.send_timeout
            )),
        }
    }))
    .await;
    // The sent ones (the usual case) in one statement; failures one by one.
    let mut sent = Vec::with_capacity(jobs.len());
    for ((id, attempts, _), result) in jobs.iter().zip(results) {
        let attempts = attempts + 1;
        match result {
            Ok(()) => sent.push(*id),
            Err(e) if attempts >= config.max_attempts => {
                tracing::error!(notification_id = id, attempts, error = %e, "notification failed for good");
                sqlx::query("UPDATE notifications SET status = 'failed', attempts = $2, last_error = $3 WHERE id = $1")
                    .bind(id)
                    .bind(attempts)
                    .bind(&e)
                    .execute(&mut *tx)
                    .await?;
                outcomes.with_label_values(&["failed"]).inc();
            }
            Err(e) => {
                let delay = backoff(config, attempts);
                tracing::warn!(notification_id = id, attempts, error = %e, retry_in_ms = delay.as_millis() as u64, "notification delivery failed; will retry");
                sqlx::query(
                    "UPDATE notifications SET attempts = $2, last_error = $3, \
                     next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1",
                )
                .bind(id)
                .bind(attempts)
                .bind(&e)
                .bind(delay.as_secs_f64())
                .execute(&mut *tx)
                .await?;
                outcomes.with_label_values(&["retried"]).inc();
            }
        }
    }
    if !sent.is_empty() {
        sqlx::query(
            "UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = now(), \
             last_error = NULL WHERE id = ANY($1)",
        )
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
        outcomes
            .with_label_values(&["sent"])
            .inc_by(sent.len() as u64);
    }
    tx.commit().await?;
    Ok(jobs.len())
}

/// Exponential backoff with ±50 % jitter, so retries of many failures spread out.
fn backoff(config: &DeliveryConfig, attempts: i32) -> Duration {
    let exp = config
        .initial_backoff
        .saturating_mul(1u32 << (attempts - 1).clamp(0, 20));
    exp.min(config.max_backoff)
        .mul_f64(rand::rng().random_range(0.5..1.5))
}
