//! What a token's user may do now, asked of user-service, which keeps the
//! roles and token versions ([`crate::auth::Authority`]).
//!
//! Every service but user-service asks it about every token:
//! `GET {USER_SERVICE_URL}/session` with the caller's own token answers
//! the current role, or 401 when the token was revoked (a role or password
//! change, a logout). Answers are kept for `SESSION_CACHE_MS` (5 s: how long a
//! demotion or a password change may take to show), and while user-service
//! is unreachable a kept answer is used for up to `SESSION_STALE_MS` (60 s).
//! After that an admin token gets a 503, while a customer's token is taken
//! at its word: it grants nothing a current customer lacks, and refusing
//! every customer while user-service is down would stop the shop for the
//! sake of a revocation that shows as soon as user-service answers again.
//!
//! A user-service that stops answering (a partition drops its packets:
//! no refusal, no reset) costs a request at most `SESSION_DEADLINE_MS`
//! (250 ms), and after `SESSION_BREAKER_FAILURES` (3) such calls in a row a
//! circuit breaker opens: for `SESSION_BREAKER_OPEN_MS` (5 s, up to twice
//! that while the failures go on) nobody asks, and every request takes the fallback
//! above at once; then one call tries again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::auth::{AuthError, AuthUser, Authority, Current, Role};
use crate::error::ApiError;

/// How the remote check behaves.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `USER_SERVICE_URL` (default `http://127.0.0.1:8080`); `none` turns
    /// the check off (tokens are then trusted until they expire).
    pub user_service_url: Option<String>,
    /// `SESSION_CACHE_MS`.
    pub fresh_for: Duration,
    /// `SESSION_STALE_MS`.
    pub stale_for: Duration,
    /// `SESSION_DEADLINE_MS`: the longest a request waits for the answer.
    pub deadline: Duration,
    /// `SESSION_BREAKER_FAILURES`: calls in a row that found user-service
    /// unreachable, after which the breaker opens.
    pub breaker_failures: u32,
    /// `SESSION_BREAKER_OPEN_MS`: how long it stays open (at least 1 s;
    /// grows, with jitter, up to twice that while failures go on).
    pub breaker_open: Duration,
}

impl SessionConfig {
    pub fn read(env: &mut crate::config::Env) -> Self {
        let url = env.get("USER_SERVICE_URL", "http://127.0.0.1:8080".to_string());
        Self {
            user_service_url: (url != "none").then(|| url.trim_end_matches('/').to_string()),
            fresh_for: env.millis("SESSION_CACHE_MS", 5_000),
            stale_for: env.millis("SESSION_STALE_MS", 60_000),
            deadline: env.millis("SESSION_DEADLINE_MS", 250),
            breaker_failures: env.in_range("SESSION_BREAKER_FAILURES", 3, 1..=1000),
            // failsafe's backoff needs at least a second.
            breaker_open: Duration::from_millis(env.in_range(
                "SESSION_BREAKER_OPEN_MS",
                5_000,
                1_000..=3_600_000,
            )),
        }
    }
}

/// Most tokens remembered; past that the memory is cleared.
const MAX_KEPT: usize = 10_000;

/// Logs the session breaker's changes.
struct BreakerLog;

impl failsafe::Instrument for BreakerLog {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        tracing::warn!("user-service session breaker opened: tokens are checked by the fallback");
    }
    fn on_half_open(&self) {}
    fn on_closed(&self) {
        tracing::info!("user-service session breaker closed");
    }
}

type Breaker = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
    BreakerLog,
>;

/// The [`Authority`] of services other than user-service.
pub struct RemoteAuthority {
    url: String,
    http: reqwest::Client,
    config: SessionConfig,
    kept: Mutex<HashMap<String, (Instant, Answer)>>,
    breaker: Breaker,
}

/// What user-service said of a token: its role now, or that it is revoked.
type Answer = Result<Role, AuthError>;

/// user-service's answer to `GET /session`.
#[derive(Debug, Deserialize)]
struct Session {
    role: Role,
}

impl RemoteAuthority {
    /// `None` when the check is configured off.
    pub fn new(config: &SessionConfig) -> Option<Self> {
        let url = format!("{}/session", config.user_service_url.as_ref()?);
        let http = reqwest::Client::builder()
            .timeout(config.deadline)
            .build()
            .ok()?;
        let policy = failsafe::failure_policy::consecutive_failures(
            config.breaker_failures,
            // At most twice as long: a revocation must show soon after
            // user-service is back.
            failsafe::backoff::equal_jittered(config.breaker_open, config.breaker_open * 2),
        );
        let breaker = failsafe::Config::new()
            .failure_policy(policy)
            .instrument(BreakerLog)
            .build();
        Some(Self {
            url,
            http,
            config: config.clone(),
            kept: Mutex::new(HashMap::new()),
            breaker,
        })
    }

    fn kept(&self, token: &str, within: Duration) -> Option<Answer> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(token)
            .filter(|(at, _)| at.elapsed() <= within)
            .map(|(_, answer)| answer.clone())
    }

    fn keep(&self, token: &str, answer: Answer) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(token.to_string(), (Instant::now(), answer));
    }

    /// Asks user-service, unless the breaker is open; `None` when it did
    /// not answer.
    async fn ask(&self, token: &str) -> Option<Answer> {
        if !self.breaker.is_call_permitted() {
            return None;
        }
        let answer = self.ask_now(token).await;
        match answer {
            Some(_) => self.breaker.on_success(),
            None => self.breaker.on_error(),
        }
        answer
    }

    async fn ask_now(&self, token: &str) -> Option<Answer> {
        let response = self.http.get(&self.url).bearer_auth(token).send().await;
        match response {
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                Some(Err(AuthError::Revoked))
            }
            Ok(r) if r.status().is_success() => match r.json::<Session>().await {
                Ok(session) => Some(Ok(session.role)),
                Err(e) => {
                    tracing::warn!(error = %e, "user-service's /session answer is not a session");
                    None
                }
            },
            Ok(r) => {
                tracing::warn!(status = %r.status(), "user-service could not check a session");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "user-service is unreachable: cannot check a session");
                None
            }
        }
    }

    /// user-service's answer about `token`: a recent one, a fresh one, or
    /// one kept while user-service is unreachable; `None` when there is none.
    async fn answer(&self, token: &str) -> Option<Answer> {
        if let Some(answer) = self.kept(token, self.config.fresh_for) {
            return Some(answer);
        }
        match self.ask(token).await {
            Some(answer) => {
                self.keep(token, answer.clone());
                Some(answer)
            }
            None => self.kept(token, self.config.stale_for),
        }
    }
}

impl Authority for RemoteAuthority {
    fn current<'a>(&'a self, token: &'a str, user: AuthUser) -> Current<'a> {
        Box::pin(async move {
            match self.answer(token).await {
                Some(Ok(role)) => Ok(AuthUser { role, ..user }),
                Some(Err(revoked)) => Err(ApiError::from(revoked)),
                None if user.role == Role::Admin => Err(ApiError::unavailable(
                    "cannot check the caller's current role: user-service is unreachable",
                )),
                // See the module doc: a customer's token is not refused
                // for want of an answer.
                None => Ok(user),
            }
        })
    }
}
