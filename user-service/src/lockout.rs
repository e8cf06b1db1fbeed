//! Password checks limited per account and per client address, before any
//! hash is computed (docs/security.md, "Password guessing").
//!
//! A password check (a login, or `current_password` in `PUT /profile`) is
//! the one thing a client can make this service do that costs a full
//! argon2 verification. So every check first takes an [`Attempt`] here:
//! - per account (the email), checks run one at a time, and after
//!   `LOGIN_FREE_FAILURES` (5) failures in a row the account is locked for a
//!   time that doubles with each further failure, from
//!   `LOGIN_LOCKOUT_BASE_MS` (1 s) up to `LOGIN_LOCKOUT_MAX_SECS` (900);
//!   a success clears it;
//! - per client address likewise, with `LOGIN_IP_FREE_FAILURES` (50) free
//!   failures (many accounts behind one address must not be an unlimited
//!   supply of guesses), which a success does not clear.
//!
//! A refusal is a 429 with `Retry-After`, before the database is asked or
//! a hash is computed, so a burst of guesses from a few accounts costs the
//! hashing pool at most one check per account at a time and never takes
//! another customer's sign-in (a 503 when the pool's queue is full).
//! Unknown emails are counted the same as known ones, so the answers do not
//! tell which accounts exist. The counts live in this process (one
//! replica's memory): with N replicas behind a balancer a guesser gets up
//! to N times the budget.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use shared::error::{ApiError, ErrorCode};

/// How guessing is limited.
#[derive(Debug, Clone, Copy)]
pub struct LockoutConfig {
    /// `LOGIN_FREE_FAILURES`: failures in a row an account may have before it is locked.
    pub account_free: u32,
    /// `LOGIN_IP_FREE_FAILURES`: likewise for a client address.
    pub ip_free: u32,
    /// `LOGIN_LOCKOUT_BASE_MS`: the first lock; each further failure doubles it.
    pub base: Duration,
    /// `LOGIN_LOCKOUT_MAX_SECS`: the longest lock.
    pub max: Duration,
}

impl LockoutConfig {
    pub fn read(env: &mut shared::config::Env) -> Self {
        Self {
            account_free: env.in_range("LOGIN_FREE_FAILURES", 5, 1..=1000),
            ip_free: env.in_range("LOGIN_IP_FREE_FAILURES", 50, 1..=100_000),
            base: env.millis("LOGIN_LOCKOUT_BASE_MS", 1000),
            max: Duration::from_secs(env.in_range("LOGIN_LOCKOUT_MAX_SECS", 900, 1..=86_400)),
        }
    }
}

/// One account's or address's record.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    in_flight: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

/// The records of one kind of key.
struct Book<K> {
    records: HashMap<K, Record>,
    free: u32,
    /// Checks of one key that may run at once.
    at_once: u32,
}

/// Above this many records, the settled ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

impl<K: Hash + Eq + Clone> Book<K> {
    fn new(free: u32, at_once: u32) -> Self {
        Self {
            records: HashMap::new(),
            free,
            at_once,
        }
    }

    /// How long `key` must wait, if it must.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let record = self.records.get(key)?;
        if let Some(until) = record.locked_until
            && until > now
        {
            return Some(until - now);
        }
        (record.in_flight >= self.at_once).then_some(Duration::from_secs(1))
    }

    fn start(&mut self, key: &K, now: Instant) {
        let record = self.records.entry(key.clone()).or_insert(Record {
            failures: 0,
            in_flight: 0,
            locked_until: None,
            last_seen: now,
        });
        record.in_flight += 1;
        record.last_seen = now;
    }

    fn finish(&mut self, key: &K, outcome: Outcome, config: &LockoutConfig, now: Instant) {
        let Some(record) = self.records.get_mut(key) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        record.last_seen = now;
        match outcome {
            Outcome::Failed => {
                record.failures = record.failures.saturating_add(1);
                if record.failures >= self.free {
                    let doublings = (record.failures - self.free).min(30);
                    let lock = config.base.saturating_mul(1 << doublings).min(config.max);
                    record.locked_until = Some(now + lock);
                }
            }
            Outcome::Succeeded { clears: true } => {
                record.failures = 0;
                record.locked_until = None;
            }
            Outcome::Succeeded { clears: false } | Outcome::Unknown => {}
        }
        if self.records.len() > PRUNE_ABOVE {
            let forget = config.max;
            self.records.retain(|_, r| {
                r.in_flight > 0
                    || r.locked_until.is_some_and(|until| until > now)
                    || now.duration_since(r.last_seen) < forget
            });
        }
    }
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded {
        clears: bool,
    },
    /// It did not get to an answer (the pool was busy, the database failed).
    Unknown,
}

struct Books {
    accounts: Book<String>,
    ips: Book<IpAddr>,
}

/// The guessing limits of this process.
#[derive(Clone)]
pub struct Lockout {
    books: Arc<Mutex<Books>>,
    config: LockoutConfig,
}

impl Lockout {
    pub fn new(config: LockoutConfig) -> Self {
        Self {
            books: Arc::new(Mutex::new(Books {
                accounts: Book::new(config.account_free, 1),
                // Many accounts may sign in from one address at once.
                ips: Book::new(config.ip_free, u32::MAX),
            })),
            config,
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A check of `account`'s password (its email, as stored) from `ip`,
    /// or a 429 with `Retry-After` when either must wait.
    pub fn attempt(&self, account: &str, ip: Option<IpAddr>) -> Result<Attempt, ApiError> {
        let now = Instant::now();
        let account = account.to_owned();
        let mut books = self.books();
        let wait = books
            .accounts
            .wait(&account, now)
            .map(|w| (w, "this account"))
            .or_else(|| {
                ip.and_then(|ip| books.ips.wait(&ip, now))
                    .map(|w| (w, "this address"))
            });
        if let Some((wait, whom)) = wait {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "too many failed password checks for {whom}; retry in {} s",
                    seconds.max(1)
                ),
            )
            .retry_after(seconds.max(1)));
        }
        books.accounts.start(&account, now);
        if let Some(ip) = ip {
            books.ips.start(&ip, now);
        }
        Ok(Attempt {
            lockout: self.clone(),
            account,
            ip,
            outcome: Outcome::Unknown,
        })
    }
}

/// A password check under way; say how it ended, or drop it (no answer).
pub struct Attempt {
    lockout: Lockout,
    account: String,
    ip: Option<IpAddr>,
    outcome: Outcome,
}

impl Attempt {
    /// The password was wrong.
    pub fn failed(mut self) {
        self.outcome = Outcome::Failed;
    }

    /// The password was right: the account's failures are cleared (not the
    /// address's: one's own account must not reset a guesser's count).
    pub fn succeeded(mut self) {
        self.outcome = Outcome::Succeeded { clears: true };
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let now = Instant::now();
        let config = self.lockout.config;
        let mut books = self.lockout.books();
        books
            .accounts
            .finish(&self.account, self.outcome, &config, now);
        if let Some(ip) = self.ip {
            let outcome = match self.outcome {
                Outcome::Succeeded { .. } => Outcome::Succeeded { clears: false },
                other => other,
            };
            books.ips.finish(&ip, outcome, &config, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig {
            account_free: 3,
            ip_free: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(1),
        })
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn an_account_is_locked_after_its_free_failures_for_longer_each_time() {
        let lockout = lockout();
        for _ in 0..3 {
            lockout.attempt("a@x.io", None).unwrap().failed();
        }
        let refused = lockout.attempt("a@x.io", None).err().unwrap();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        // Another account is not affected.
        lockout.attempt("b@x.io", None).unwrap().succeeded();
        std::thread::sleep(Duration::from_millis(250));
        // The lock is over; one more failure locks for twice as long.
        lockout.attempt("a@x.io", None).unwrap().failed();
        std::thread::sleep(Duration::from_millis(250));
        assert!(lockout.attempt("a@x.io", None).is_err(), "400 ms this time");
        std::thread::sleep(Duration::from_millis(200));
        // A success clears the account.
        lockout.attempt("a@x.io", None).unwrap().succeeded();
        lockout.attempt("a@x.io", None).unwrap().failed();
        assert!(lockout.attempt("a@x.io", None).is_ok());
    }

    #[test]
    fn an_accounts_checks_run_one_at_a_time() {
        let lockout = lockout();
        let first = lockout.attempt("a@x.io", None).unwrap();
        assert!(lockout.attempt("a@x.io", None).is_err());
        assert!(lockout.attempt("b@x.io", None).is_ok());
        drop(first); // no answer: nothing counted
        let again = lockout.attempt("a@x.io", None).unwrap();
        again.failed();
        assert!(lockout.attempt("a@x.io", None).is_ok());
    }

    #[test]
    fn an_address_is_locked_after_its_free_failures_over_any_accounts() {
        let lockout = lockout();
        for i in 0..5 {
            lockout.attempt(&format!("{i}@x.io"), IP).unwrap().failed();
        }
        let refused = lockout.attempt("new@x.io", IP).err().unwrap();
        assert!(
            refused.message.contains("this address"),
            "{}",
            refused.message
        );
        // Another address, the same account: fine.
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)));
        assert!(lockout.attempt("new@x.io", other).is_ok());
    }

    #[test]
    fn a_success_does_not_clear_the_address() {
        let lockout = lockout();
        for i in 0..4 {
            lockout.attempt(&format!("{i}@x.io"), IP).unwrap().failed();
        }
        lockout.attempt("mine@x.io", IP).unwrap().succeeded();
        lockout.attempt("5@x.io", IP).unwrap().failed();
        assert!(lockout.attempt("6@x.io", IP).is_err());
    }
}
