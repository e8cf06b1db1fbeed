//! web's configuration (environment variables, listed in docs/contracts.md).

use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{ConfigError, Env, FromEnv, JwtConfig};
use shared::http::ServerLimits;
use shared::kafka::KafkaConfig;
use shared::ratelimit::ForwardedFor;

/// The port of `HTTP_ADDR` when it is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8085;

/// Where the APIs web calls are (each `*_SERVICE_URL`; user-service's is
/// `USER_SERVICE_URL`, which also checks every token, as in every service).
#[derive(Debug, Clone)]
pub struct Services {
    pub user: String,
    pub product: String,
    pub order: String,
    pub payment: String,
    pub notification: String,
}

/// One instance whose `/health` and `/ready` the console shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `HTTP_ADDR` (default `0.0.0.0:8085`).
    pub http_addr: SocketAddr,
    pub http_limits: ServerLimits,
    /// Verifies the session's token; `USER_SERVICE_URL` says who is an admin now.
    pub jwt: JwtConfig,
    pub services: Services,
    /// `WEB_INSTANCES`: `name=url,...` (default: the five services' URLs).
    pub instances: Vec<Instance>,
    /// The saga's topic, for the console's feed, lag and dead letters.
    pub kafka: KafkaConfig,
    /// `PROMETHEUS_URL`: the console's charts query its API (none: no charts).
    pub prometheus_url: Option<String>,
    /// `ALERTMANAGER_URL`: the console lists its alerts (none: not shown).
    pub alertmanager_url: Option<String>,
    /// `JAEGER_URL`: trace links open Jaeger there (compose, k8s) instead
    /// of the console's own waterfall.
    pub jaeger_url: Option<String>,
    /// `OTLP_ADDR`: where web receives the services' spans over OTLP/gRPC
    /// and keeps the last `TRACE_CAPACITY` traces (default 500) in memory.
    pub otlp_addr: Option<SocketAddr>,
    pub trace_capacity: usize,
    /// `OTLP_TOKEN` (or `OTLP_TOKEN_FILE`): what a sender of spans must
    /// present in `x-otlp-token` (none: any sender that reaches `OTLP_ADDR`).
    pub otlp_token: Option<String>,
    /// `COOKIE_SECURE`: mark the cookies Secure (set it where web is
    /// served over TLS; default false, as `make up` serves plain HTTP).
    pub cookie_secure: bool,
    /// `TRUST_FORWARDED_FOR`: whose `X-Forwarded-For` names the visitor
    /// (a proxy in front of web); web passes the visitor's address on to
    /// user-service, which limits sign-ins per address.
    pub trust_forwarded_for: ForwardedFor,
    /// `WEB_API_TIMEOUT_MS`: the longest one call to an API may take (default 10 s).
    pub api_timeout: Duration,
    /// `WEB_LIVE_POLL_MS`: how often a live order page asks for its timeline (default 300 ms).
    pub live_poll: Duration,
    /// `WEB_FEED_CAPACITY`: how many events the console's feed keeps (default 5000).
    pub feed_capacity: usize,
    /// `WEB_WATCH_MS`: how often the console measures the lag and the dead
    /// letters (default 5 s).
    pub watch_every: Duration,
}

fn url(env: &mut Env, var: &str, port: u16) -> String {
    let value: String = env.get(var, format!("http://127.0.0.1:{port}"));
    value.trim_end_matches('/').to_string()
}

impl FromEnv for Config {
    fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let jwt = JwtConfig::read(&mut env);
        let user = jwt
            .session
            .user_service_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let services = Services {
            user,
            product: url(&mut env, "PRODUCT_SERVICE_URL", 8081),
            order: url(&mut env, "ORDER_SERVICE_URL", 8082),
            payment: url(&mut env, "PAYMENT_SERVICE_URL", 8083),
            notification: url(&mut env, "NOTIFICATION_SERVICE_URL", 8084),
        };
        let instances = match env.opt::<String>("WEB_INSTANCES") {
            Some(list) => parse_instances(&list).unwrap_or_else(|why| {
                env.problem(format!("WEB_INSTANCES: {why}"));
                Vec::new()
            }),
            None => [
                ("user-service", &services.user),
                ("product-service", &services.product),
                ("order-service", &services.order),
                ("payment-service", &services.payment),
                ("notification-service", &services.notification),
            ]
            .into_iter()
            .map(|(name, url)| Instance {
                name: name.into(),
                url: url.clone(),
            })
            .collect(),
        };
        let optional_url = |env: &mut Env, var: &str| {
            env.opt::<String>(var)
                .map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty())
        };
        let config = Self {
            http_addr: env.get(
                "HTTP_ADDR",
                SocketAddr::from(([0, 0, 0, 0], DEFAULT_HTTP_PORT)),
            ),
            http_limits: ServerLimits::read(&mut env),
            jwt,
            services,
            instances,
            kafka: KafkaConfig::read(&mut env),
            prometheus_url: optional_url(&mut env, "PROMETHEUS_URL"),
            alertmanager_url: optional_url(&mut env, "ALERTMANAGER_URL"),
            jaeger_url: optional_url(&mut env, "JAEGER_URL"),
            otlp_addr: env.opt("OTLP_ADDR"),
            trace_capacity: env.in_range("TRACE_CAPACITY", 500, 1..=100_000),
            otlp_token: env.opt("OTLP_TOKEN"),
            cookie_secure: env.get("COOKIE_SECURE", false),
            trust_forwarded_for: env.get("TRUST_FORWARDED_FOR", ForwardedFor::Never),
            api_timeout: env.millis("WEB_API_TIMEOUT_MS", 10_000),
            live_poll: env.millis("WEB_LIVE_POLL_MS", 300),
            feed_capacity: env.in_range("WEB_FEED_CAPACITY", 5000, 10..=1_000_000),
            watch_every: env.millis("WEB_WATCH_MS", 5_000),
        };
        env.finish()?;
        Ok(config)
    }
}

/// `name=url,name=url`: the instances the console checks.
fn parse_instances(list: &str) -> Result<Vec<Instance>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((name, url))
                if !name.trim().is_empty()
                    && (url.starts_with("http://") || url.starts_with("https://")) =>
            {
                Ok(Instance {
                    name: name.trim().into(),
                    url: url.trim_end_matches('/').into(),
                })
            }
            _ => Err(format!("{entry:?} is not name=http(s)://host:port")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_named_urls() {
        assert_eq!(
            parse_instances("order-service=http://a:1/, order-service-2=https://b:2").unwrap(),
            vec![
                Instance {
                    name: "order-service".into(),
                    url: "http://a:1".into()
                },
                Instance {
                    name: "order-service-2".into(),
                    url: "https://b:2".into()
                },
            ]
        );
        assert!(parse_instances("order-service").is_err());
        assert!(parse_instances("x=ftp://a").is_err());
    }
}
