//! Typed configuration from environment variables (12-factor).
//!
//! Every service reads its settings through an [`Env`], which parses each
//! variable into its type, falls back to a working local default, and collects
//! *all* bad values so start-up fails once with one clear message instead of
//! making the operator fix them one restart at a time.
//!
//! Any variable `NAME` may instead be given as `NAME_FILE`, the path of a file
//! holding the value (trailing newline ignored), so that secrets come from
//! mounted files (Docker/Kubernetes secrets) and never from literals.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// Start-up configuration was invalid; the message lists every bad variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    /// One line per bad variable: `NAME=value: why`.
    pub problems: Vec<String>,
}

/// Reads and validates environment variables, remembering every problem.
#[derive(Debug, Default)]
pub struct Env {
    problems: Vec<String>,
    /// Overrides consulted before the process environment (tests use this).
    overrides: Vec<(String, String)>,
}

impl Env {
    /// Reads from the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `overrides` first, then the process environment.
    pub fn with_overrides(overrides: &[(&str, &str)]) -> Self {
        Self {
            problems: Vec::new(),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// These overrides too, after (and over) the ones before.
    pub fn and(mut self, overrides: &[(&str, &str)]) -> Self {
        self.overrides.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.overrides.iter().rev().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Some(v),
            _ => None,
        }
    }

    /// Whether `name` or `name_FILE` is set.
    pub fn is_set(&self, name: &str) -> bool {
        self.lookup(name).is_some() || self.lookup(&format!("{name}_FILE")).is_some()
    }

    /// The value of `name`, else the content of the file named by `name_FILE`.
    fn raw(&mut self, name: &str) -> Option<String> {
        if let Some(v) = self.lookup(name) {
            return Some(v);
        }
        let file_var = format!("{name}_FILE");
        let file = self.lookup(&file_var)?;
        match std::fs::read_to_string(file.trim()) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim_end_matches(['\n', '\r']).to_owned()),
            Ok(_) => {
                self.problems
                    .push(format!("{file_var}={file:?}: the file is empty"));
                None
            }
            Err(e) => {
                self.problems
                    .push(format!("{file_var}={file:?}: cannot read it ({e})"));
                None
            }
        }
    }

    /// The variable parsed as `T`, or `default` when unset.
    pub fn get<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        self.opt(name).unwrap_or(default)
    }

    /// The variable parsed as `T`, or `None` when unset.
    pub fn opt<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.raw(name)?;
        match raw.trim().parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(format!("{name}={raw:?}: {e}"));
                None
            }
        }
    }

    /// A duration given in milliseconds (`FOO_MS=250`).
    pub fn millis(&mut self, name: &str, default_ms: u64) -> Duration {
        Duration::from_millis(self.get(name, default_ms))
    }

    /// A number that must lie in `range`.
    pub fn in_range<T>(&mut self, name: &str, default: T, range: std::ops::RangeInclusive<T>) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let v = self.get(name, default);
        if !range.contains(&v) {
            self.problems.push(format!(
                "{name}={v}: must be between {} and {}",
                range.start(),
                range.end()
            ));
        }
        v
    }

    /// Records a problem found by a check the caller made itself.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// Ends reading: an error listing every problem, if there was any.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// A configuration read from the environment, failing with every problem
/// at once.
pub trait FromEnv: Sized {
    fn from_env(env: Env) -> Result<Self, ConfigError>;
}

/// Settings every service has: where it listens, its database, its pool.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `HTTP_ADDR`: where the REST API, health and metrics listen.
    pub http_addr: std::net::SocketAddr,
    /// `DATABASE_URL`: this service's own database.
    pub database_url: String,
    /// `DATABASE_PASSWORD` (or `DATABASE_PASSWORD_FILE`): overrides the URL's
    /// password, so the URL itself can live in plain configuration.
    pub database_password: Option<String>,
    /// `DB_MAX_CONNECTIONS`: the pool size; PostgreSQL's own limit is shared by five services.
    pub db_max_connections: u32,
    /// `DB_TIMEOUT_MS`: how long a query or a pool checkout may take before it fails.
    pub db_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT_MS`: how long start-up waits for the database to accept connections.
    pub db_connect_timeout: Duration,
    /// What one HTTP client may hold of the server.
    pub http_limits: crate::http::ServerLimits,
}

impl CommonConfig {
    /// Reads the common settings with `default_port` and `default_db` as local defaults.
    pub fn read(env: &mut Env, default_port: u16, default_db: &str) -> Self {
        Self {
            http_addr: env.get(
                "HTTP_ADDR",
                std::net::SocketAddr::from(([0, 0, 0, 0], default_port)),
            ),
            database_url: env.get(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{default_db}"),
            ),
            database_password: env.opt("DATABASE_PASSWORD"),
            db_max_connections: env.in_range("DB_MAX_CONNECTIONS", 10, 1..=500),
            db_timeout: env.millis("DB_TIMEOUT_MS", 5_000),
            db_connect_timeout: env.millis("DB_CONNECT_TIMEOUT_MS", 30_000),
            http_limits: crate::http::ServerLimits::read(env),
        }
    }
}

/// Where the JWT public key comes from, and which issuer/audience tokens must name.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The PEM of the user service's public key (`JWT_PUBLIC_KEY`, or read from `JWT_PUBLIC_KEY_FILE`).
    pub public_key_pem: String,
    /// `JWT_ISSUER`: the `iss` every token must carry.
    pub issuer: String,
    /// `JWT_AUDIENCE`: the `aud` every token must carry.
    pub audience: String,
    /// Where a token's current role is asked (user-service).
    pub session: crate::authority::SessionConfig,
}

/// Default location of the local key pair that `make up` generates.
pub const DEFAULT_PUBLIC_KEY_FILE: &str = ".local/keys/jwt_public.pem";
/// The private half, read by user-service only.
pub const DEFAULT_PRIVATE_KEY_FILE: &str = ".local/keys/jwt_private.pem";

impl JwtConfig {
    /// Reads the verification settings; a missing key is a configuration problem.
    pub fn read(env: &mut Env) -> Self {
        Self {
            public_key_pem: read_pem(env, "JWT_PUBLIC_KEY", DEFAULT_PUBLIC_KEY_FILE),
            issuer: env.get("JWT_ISSUER", "minishop-user-service".into()),
            audience: env.get("JWT_AUDIENCE", "minishop".into()),
            session: crate::authority::SessionConfig::read(env),
        }
    }
}

/// A PEM given inline in `var` or in the file named by `<var>_FILE`, else read
/// from `default_file` (where `make up` puts it); a missing one is a problem.
pub fn read_pem(env: &mut Env, var: &str, default_file: &str) -> String {
    if env.is_set(var) {
        return env.opt(var).unwrap_or_default();
    }
    match std::fs::read_to_string(default_file) {
        Ok(pem) => pem,
        Err(e) => {
            env.problem(format!(
                "{var}: not set, and the default file {default_file:?} cannot be read ({e}); \
                 set {var} or {var}_FILE, or run `make up`, which generates a local key pair"
            ));
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_bad_value_in_one_error() {
        let mut env = Env::with_overrides(&[("A_PORT", "eighty"), ("B_COUNT", "-3")]);
        let _: u16 = env.get("A_PORT", 1);
        let _: u32 = env.get("B_COUNT", 1);
        let err = env.finish().unwrap_err();
        assert_eq!(err.problems.len(), 2);
        let text = err.to_string();
        assert!(text.contains("A_PORT=\"eighty\""), "{text}");
        assert!(text.contains("B_COUNT=\"-3\""), "{text}");
    }

    #[test]
    fn defaults_apply_when_unset_and_ranges_are_enforced() {
        let mut env = Env::with_overrides(&[("POOL", "0")]);
        assert_eq!(env.get("MINISHOP_SURELY_UNSET_VAR", 7u8), 7);
        let _ = env.in_range("POOL", 10u32, 1..=500);
        let err = env.finish().unwrap_err();
        assert!(err.problems[0].contains("between 1 and 500"));
    }

    #[test]
    fn a_value_can_come_from_the_file_named_by_name_file() {
        let dir = std::env::temp_dir().join(format!("minishop-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("password");
        std::fs::write(&secret, "s3cret-from-file\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let secret_path = secret.to_string_lossy().into_owned();
        let empty_path = empty.to_string_lossy().into_owned();
        let mut env = Env::with_overrides(&[
            ("PASSWORD_FILE", secret_path.as_str()),
            ("DIRECT", "inline"),
            ("DIRECT_FILE", "/nonexistent/ignored"),
            ("EMPTY_FILE", empty_path.as_str()),
            ("MISSING_FILE", "/nonexistent/minishop-secret"),
        ]);
        assert!(env.is_set("PASSWORD"));
        assert_eq!(
            env.opt::<String>("PASSWORD").as_deref(),
            Some("s3cret-from-file")
        );
        // The variable itself wins over its _FILE.
        assert_eq!(env.opt::<String>("DIRECT").as_deref(), Some("inline"));
        assert_eq!(env.opt::<String>("EMPTY"), None);
        assert_eq!(env.opt::<String>("MISSING"), None);
        let problems = env.finish().unwrap_err().problems;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("EMPTY_FILE") && problems[0].contains("empty"));
        assert!(problems[1].contains("MISSING_FILE") && problems[1].contains("cannot read"));
    }
}
