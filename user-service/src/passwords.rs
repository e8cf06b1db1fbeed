//! Password hashing with argon2id. Hashing is CPU- and memory-heavy by
//! design, so it runs on the blocking pool, never on the async workers.
//! Default cost: 19 MiB, 2 iterations, 1 lane (OWASP's argon2id baseline).

use std::sync::Arc;

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
}

/// Hashes and checks passwords.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
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
}

impl Passwords {
    pub fn new(cost: HashCost) -> Result<Self, HashError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(HashError::Params)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2
            .hash_password(b"not a password anyone has: only its cost matters")
            .map_err(HashError::Argon2)?
            .to_string();
        Ok(Self {
            inner: Arc::new(Inner { argon2, dummy_hash }),
        })
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
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
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
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
        .unwrap_or(false)
    }
}
