//! Password hashing with argon2id. Hashing is CPU- and memory-heavy by
//! design, so it runs on the blocking pool, never on the async workers.
//! Default cost: 19 MiB, 2 iterations, 1 lane (OWASP's argon2id baseline).
//!
//! At most `HASH_CONCURRENCY` hashes (default: the cores) run at once, so
//! their memory is bounded (19 MiB each) whatever the burst; a few more
//! callers (`HASH_QUEUE`) may wait for a turn, and anyone beyond that is
//! told at once to come back ([`Busy`], a 503 with `Retry-After`).

use std::sync::Arc;

use shared::metrics::Metrics;
use shared::metrics::prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// The argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// `ARGON2_MEMORY_KIB`.
    pub memory_kib: u32,
    /// `ARGON2_ITERATIONS`.
    pub iterations: u32,
    /// `ARGON2_PARALLELISM`.
    pub parallelism: u32,
    /// `HASH_CONCURRENCY`: hashes at once (default: the cores).
    pub concurrency: usize,
    /// `HASH_QUEUE`: callers that may wait for a turn beyond those.
    pub queue: usize,
}

/// Every hashing turn and queue place is taken: come back later.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many password checks at once; try again shortly")]
pub struct Busy;

/// Hashes and checks passwords.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
    concurrency: usize,
}

struct Inner {
    argon2: Argon2<'static>,
    /// Hashes running (one permit each).
    running: Arc<Semaphore>,
    /// Callers admitted: running plus waiting.
    admitted: Arc<Semaphore>,
    /// `password_hashes_running`.
    running_gauge: IntGauge,
    /// `password_hashes_refused_total`: callers sent away with a 503.
    refused: IntCounter,
    /// A hash of a random password, checked when the email is unknown so a
    /// login for a missing user takes as long as one with a wrong password.
    dummy_hash: String,
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid argon2 parameters")]
    Params(#[source] argon2::Error),
    #[error("argon2 failed")]
    Argon2(#[source] argon2::password_hash::Error),
    #[error("the hashing task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// A full queue is a 503 with `Retry-After`; anything else went wrong here.
impl From<HashError> for shared::error::ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy(busy) => busy.into(),
            other => shared::error::ApiError::internal(shared::app::with_causes(&other)),
        }
    }
}

impl From<Busy> for shared::error::ApiError {
    fn from(busy: Busy) -> Self {
        shared::error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            shared::error::ErrorCode::Overloaded,
            busy.to_string(),
        )
        .retry_after(1)
    }
}

/// One caller's turn; dropping it (when the blocking work ends) frees it.
struct Turn {
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    gauge: IntGauge,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A PHC string with `params`' cost that no password matches: checking it
/// costs what checking a stored hash does (argon2 takes the cost from the
/// string), and making it costs nothing, where hashing a made-up password
/// for it took one more hash (and its `m` KiB, 19 MiB by default) at every
/// start.
fn dummy_hash(params: &Params) -> String {
    // 16 bytes of salt ("not a salt, just") and 32 zero bytes of output,
    // base64 without padding.
    format!(
        "$argon2id$v=19$m={},t={},p={}$bm90IGEgc2FsdCwganVzdA${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        "A".repeat(43)
    )
}

impl Passwords {
    pub fn new(cost: HashCost, metrics: &Metrics) -> Result<Self, HashError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(HashError::Params)?;
        let dummy_hash = dummy_hash(&params);
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let concurrency = cost.concurrency.max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                argon2,
                dummy_hash,
                running: Arc::new(Semaphore::new(concurrency)),
                admitted: Arc::new(Semaphore::new(concurrency + cost.queue)),
                running_gauge: metrics.int_gauge(
                    "password_hashes_running",
                    "Password hashes or checks running now (at most HASH_CONCURRENCY)",
                ),
                refused: metrics.int_counter(
                    "password_hashes_refused_total",
                    "Password hashes or checks refused with a 503 because the queue was full",
                ),
            }),
            concurrency,
        })
    }

    /// A turn to hash: refused at once when the queue is full, else waits.
    async fn turn(&self) -> Result<Turn, Busy> {
        let Ok(admitted) = self.inner.admitted.clone().try_acquire_owned() else {
            self.inner.refused.inc();
            return Err(Busy);
        };
        let running = self
            .inner
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        self.inner.running_gauge.inc();
        Ok(Turn {
            _permits: (admitted, running),
            gauge: self.inner.running_gauge.clone(),
        })
    }

    /// Hashes running now.
    pub fn running(&self) -> usize {
        self.concurrency - self.inner.running.available_permits()
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let turn = self.turn().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            inner
                .argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(HashError::Argon2)
        })
        .await
        .map_err(HashError::Task)?
    }

    /// Whether `password` matches `hash`; with `None` (no such user) it
    /// checks the dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        let turn = self.turn().await?;
        let inner = self.inner.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| inner.dummy_hash.clone());
            let Ok(parsed) = PasswordHash::new(&hash) else {
                tracing::error!("a stored password hash is not a PHC string");
                return false;
            };
            inner
                .argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
                && known
        })
        .await
        .unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_stored_one_does_and_matches_nothing() {
        let params = Params::new(8192, 3, 1, None).unwrap();
        let dummy = dummy_hash(&params);
        let parsed = PasswordHash::new(&dummy).unwrap();
        let cost = Params::try_from(&parsed).unwrap();
        assert_eq!((cost.m_cost(), cost.t_cost(), cost.p_cost()), (8192, 3, 1));
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let stored = argon2.hash_password(b"secret").unwrap().to_string();
        assert_eq!(
            PasswordHash::new(&stored).unwrap().hash.map(|h| h.len()),
            Some(32)
        );
        for password in [&b""[..], b"secret", b"not a salt, just"] {
            assert!(argon2.verify_password(password, &parsed).is_err());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_runs_at_most_the_concurrency_and_the_excess_is_busy() {
        let cost = HashCost {
            memory_kib: 8192,
            iterations: 2,
            parallelism: 1,
            concurrency: 2,
            queue: 2,
        };
        let passwords = Passwords::new(cost, &Metrics::new("test")).unwrap();
        let hash = passwords.hash("secret".into()).await.unwrap();
        let burst: Vec<_> = (0..20)
            .map(|_| {
                let passwords = passwords.clone();
                let hash = hash.clone();
                tokio::spawn(async move { passwords.verify("secret".into(), Some(hash)).await })
            })
            .collect();
        let mut peak = 0;
        while burst.iter().any(|t| !t.is_finished()) {
            peak = peak.max(passwords.running());
            tokio::task::yield_now().await;
        }
        let mut busy = 0;
        for task in burst {
            match task.await.unwrap() {
                Ok(matched) => assert!(matched),
                Err(Busy) => busy += 1,
            }
        }
        assert!(
            peak <= 2,
            "at most HASH_CONCURRENCY hashes at once, saw {peak}"
        );
        assert!(
            busy >= 10,
            "beyond the concurrency and the queue, callers are refused: {busy} of 20"
        );
        assert!(busy < 20, "the admitted ones ran");
        assert_eq!(passwords.running(), 0);
    }
}
