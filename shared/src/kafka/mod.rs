//! Kafka plumbing every saga service uses: the event types ([`events`])
//! and their AsyncAPI document ([`contract`]),
//! the transactional outbox and its relay ([`outbox`]), the inbox
//! ([`claim`]), and the consumer with retries and a dead-letter topic
//! ([`consumer`]). Their tables live in `shared/migrations/`, applied by
//! [`migrate`] next to each service's own migrations.

pub mod consumer;
pub mod contract;
pub mod events;
pub mod outbox;
pub mod signing;

use std::time::Duration;

use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use sqlx::{PgPool, Postgres, Transaction};

use crate::config::Env;

/// Why the Kafka side could not start, or stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create a Kafka {client} for {brokers}")]
    Client {
        client: &'static str,
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot reach the Kafka broker at {brokers}")]
    Unreachable {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("the broker did not answer a metadata request")]
    Metadata(#[source] KafkaError),
    #[error("cannot create topic {topic}")]
    Topic {
        topic: String,
        #[source]
        code: RDKafkaErrorCode,
    },
    #[error("cannot subscribe to {topic}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// librdkafka's fatal error: the client cannot go on.
    #[error("the Kafka consumer failed for good: {0}")]
    Fatal(String),
    #[error("an event handler panicked: {0}")]
    HandlerPanicked(String),
    #[error("a Kafka task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Where the broker is and which topic the saga uses.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `KAFKA_BROKERS`: bootstrap servers.
    pub brokers: String,
    /// `KAFKA_TOPIC`: the one topic of every producer and consumer.
    pub topic: String,
    /// `KAFKA_PARTITIONS`: partitions of the topic when this service creates it.
    pub partitions: i32,
    /// `KAFKA_CONSUMER_QUEUE_KB`: the most a consumer fetches ahead of its
    /// handlers, in KB, over all its partitions (default 4096).
    /// librdkafka's own default, 64 MB and 100,000 events a partition, let
    /// a service behind on a backlog hold tens of MB of events it has not
    /// started on; a few MB keep the handlers fed at the saga's rates.
    pub consumer_queue_kb: u32,
    /// `KAFKA_REPLICATION_FACTOR`: replicas of each topic when this service
    /// creates them (default 1, for one broker). On a cluster whose
    /// `min.insync.replicas` is 2, it must be at least 3 for `acks=all`
    /// writes to go on with one broker down.
    pub replication_factor: i32,
    /// `KAFKA_RETRY_MAX_BACKOFF_MS`: the longest wait between two tries of
    /// a handler that fails transiently (default 5 s). It is retried until
    /// it succeeds, so this bounds how late a recovered database is noticed.
    pub retry_max_backoff: Duration,
    /// `OUTBOX_POLL_MS`: how often the relay looks for unsent events it was
    /// not woken for (default 100).
    pub outbox_poll: Duration,
    /// `OUTBOX_RETENTION_SECS`: how long sent outbox rows are kept.
    pub outbox_retention: Duration,
    /// `OUTBOX_BATCH`: the most events the relay reads and has in flight to
    /// the broker at once (default 200). It bounds the relay's memory; a
    /// larger batch saves round trips only while a backlog is draining.
    pub outbox_batch: u32,
    /// `KAFKA_GROUP_PREFIX`: put before every consumer group name (default
    /// none), so two deployments (or parallel tests) can share a broker
    /// without joining each other's groups.
    pub group_prefix: String,
    /// `KAFKA_LAG_INTERVAL_MS`: how often a consumer measures its lag (default 5 s).
    pub lag_interval: Duration,
    /// `KAFKA_COMMIT_INTERVAL_MS`: how often a consumer commits the offsets
    /// of the events it has handled (default 1 s). Committing once per event
    /// cost the broker a storage transaction per event and group; the inbox
    /// makes the redelivery of up to this much work after a crash harmless.
    pub commit_interval: Duration,
    /// `KAFKA_GROUP_INSTANCE_ID`: this instance's static group membership
    /// (KIP-345), unset by default. It must be stable across restarts of one
    /// instance and unique among the running ones (a pod name, a systemd
    /// unit). A restarted instance then takes its partitions back at once,
    /// instead of the group waiting out the dead member's session (10 s)
    /// and rebalancing twice. Two running instances with one id fence each
    /// other, so leave it unset where that can't be promised. Off by default:
    /// with the local broker, a static member whose session timed out under
    /// saturation was fenced on rejoining, which librdkafka treats as fatal.
    pub group_instance_id: Option<String>,
    /// How this service logs in to the broker (docs/security.md, "The broker").
    pub auth: Option<BrokerLogin>,
    /// The key its events are signed with and the keys it takes events
    /// from ([`signing::EventKeys::read`], by the services; none for tools).
    pub events: signing::EventKeys,
}

/// A SASL/SCRAM login: `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` (or
/// `_FILE`) and `KAFKA_SASL_MECHANISM` (`SCRAM-SHA-512`, the default, or
/// `SCRAM-SHA-256`). Without a username the client does not log in, for a
/// broker that asks nobody (tests, a local experiment).
#[derive(Clone)]
pub struct BrokerLogin {
    pub username: String,
    password: String,
    pub mechanism: ScramMechanism,
}

impl std::fmt::Debug for BrokerLogin {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerLogin")
            .field("username", &self.username)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

crate::text_enum! {
    /// The SCRAM variants Kafka brokers offer.
    pub enum ScramMechanism {
        Sha512 = "SCRAM-SHA-512",
        Sha256 = "SCRAM-SHA-256",
    }
}

impl BrokerLogin {
    /// `username` with `password` over `mechanism`.
    pub fn new(username: &str, password: &str, mechanism: ScramMechanism) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            mechanism,
        }
    }

    fn read(env: &mut Env) -> Option<Self> {
        let username: String = env.opt("KAFKA_SASL_USERNAME")?;
        let password = env.opt::<String>("KAFKA_SASL_PASSWORD").unwrap_or_else(|| {
            env.problem("KAFKA_SASL_PASSWORD: needed with KAFKA_SASL_USERNAME (or _FILE)");
            String::new()
        });
        let name = env.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_string());
        let mechanism = ScramMechanism::parse(&name).unwrap_or_else(|| {
            env.problem(format!(
                "KAFKA_SASL_MECHANISM={name:?}: must be one of {}",
                ScramMechanism::NAMES.join(", ")
            ));
            ScramMechanism::Sha512
        });
        Some(Self {
            username,
            password,
            mechanism,
        })
    }
}

impl KafkaConfig {
    pub fn read(env: &mut Env) -> Self {
        Self {
            brokers: env.get("KAFKA_BROKERS", "127.0.0.1:9092".into()),
            topic: env.get("KAFKA_TOPIC", "order_events".into()),
            partitions: env.in_range("KAFKA_PARTITIONS", 6, 1..=1000),
            replication_factor: env.in_range("KAFKA_REPLICATION_FACTOR", 1, 1..=32),
            consumer_queue_kb: env.in_range("KAFKA_CONSUMER_QUEUE_KB", 4096, 64..=2_097_151),
            retry_max_backoff: Duration::from_millis(env.in_range(
                "KAFKA_RETRY_MAX_BACKOFF_MS",
                5_000,
                100..=300_000,
            )),
            // Short, as it is how the relay finds another replica's events.
            outbox_poll: env.millis("OUTBOX_POLL_MS", 100),
            outbox_retention: Duration::from_secs(env.get("OUTBOX_RETENTION_SECS", 7 * 24 * 3600)),
            outbox_batch: env.in_range("OUTBOX_BATCH", 200, 1..=10_000),
            group_prefix: env.get("KAFKA_GROUP_PREFIX", String::new()),
            lag_interval: env.millis("KAFKA_LAG_INTERVAL_MS", 5_000),
            // librdkafka takes 0 as "never commit in the background".
            commit_interval: Duration::from_millis(env.in_range(
                "KAFKA_COMMIT_INTERVAL_MS",
                1_000,
                10..=60_000,
            )),
            group_instance_id: env
                .opt::<String>("KAFKA_GROUP_INSTANCE_ID")
                .filter(|id| !id.is_empty()),
            auth: BrokerLogin::read(env),
            events: signing::EventKeys::default(),
        }
    }

    /// This configuration with the service's event keys.
    pub fn with_events(self, events: signing::EventKeys) -> Self {
        Self { events, ..self }
    }

    /// The configuration of a tool pointed at `brokers`: everything else
    /// (the login above all) from the process environment, as a service reads it.
    pub fn at(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            ..Self::read(&mut Env::new())
        }
    }

    /// The settings every client of this configuration starts from: where
    /// the broker is, and the login if there is one.
    pub fn client(&self) -> ClientConfig {
        let mut settings = ClientConfig::new();
        settings.set("bootstrap.servers", &self.brokers);
        if let Some(login) = &self.auth {
            settings
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanism", login.mechanism.as_str())
                .set("sasl.username", &login.username)
                .set("sasl.password", &login.password);
        }
        settings
    }

    /// The consumer settings of this configuration.
    pub fn consumer_config(&self) -> consumer::ConsumerConfig {
        consumer::ConsumerConfig {
            topic: self.topic.clone(),
            dlq_topic: self.dlq_topic(),
            initial_backoff: Duration::from_millis(100),
            max_backoff: self.retry_max_backoff,
            lag_interval: self.lag_interval,
            keyring: self.events.keyring.clone(),
        }
    }

    /// The relay settings of this configuration.
    pub fn relay_config(&self) -> outbox::RelayConfig {
        outbox::RelayConfig {
            topic: self.topic.clone(),
            poll_interval: self.outbox_poll,
            retention: self.outbox_retention,
            batch: self.outbox_batch,
            signer: self.events.signer.clone(),
        }
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }

    /// An idempotent producer that waits for every in-sync replica.
    pub fn producer(&self) -> Result<FutureProducer, Error> {
        self.client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5")
            .create()
            .map_err(|source| self.client_error("producer", source))
    }

    /// A consumer of `group` (after the prefix) that commits, every
    /// `commit_interval`, only the offsets its workers have stored once an
    /// event's effect was committed.
    pub fn consumer(&self, group: &str) -> Result<consumer::GroupConsumer, Error> {
        self.consumer_settings(group)
            .create()
            .map(consumer::GroupConsumer::new)
            .map_err(|source| self.client_error("consumer", source))
    }

    fn client_error(&self, client: &'static str, source: KafkaError) -> Error {
        Error::Client {
            client,
            brokers: self.brokers.clone(),
            source,
        }
    }

    /// The settings of [`Self::consumer`].
    pub fn consumer_settings(&self, group: &str) -> ClientConfig {
        let mut settings = self.client();
        settings
            .set("group.id", format!("{}{group}", self.group_prefix))
            // Offsets are stored by hand after each effect (never on
            // receipt) and committed in the background, in batches.
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval.as_millis().to_string(),
            )
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set(
                "queued.max.messages.kbytes",
                self.consumer_queue_kb.to_string(),
            )
            // Per partition, in events; the KB bound above usually comes first.
            .set("queued.min.messages", "1000");
        if let Some(id) = &self.group_instance_id {
            settings.set("group.instance.id", id);
        }
        settings
    }

    /// Creates the topic and its dead-letter topic unless they exist.
    pub async fn ensure_topics(&self) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = self
            .client()
            .create()
            .map_err(|source| self.client_error("admin client", source))?;
        let dlq = self.dlq_topic();
        let replication = || TopicReplication::Fixed(self.replication_factor);
        let topics = [
            NewTopic::new(&self.topic, self.partitions, replication()),
            NewTopic::new(&dlq, 1, replication()),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(|source| Error::Unreachable {
                brokers: self.brokers.clone(),
                source,
            })?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(Error::Topic { topic, code }),
            }
        }
        Ok(())
    }
}

/// The Kafka side's metrics, in the service's registry.
#[derive(Clone)]
pub struct KafkaMetrics {
    /// `kafka_events_produced_total{event_type}`: published by the outbox relay.
    pub produced: IntCounterVec,
    /// `kafka_events_consumed_total{event_type,outcome}`: `processed`,
    /// `skipped` (a type this version does not know), `dead_lettered`,
    /// `refused` (it contradicted the service's own state; dead-lettered), or
    /// `interrupted` (shutdown while retrying; delivered again).
    pub consumed: IntCounterVec,
    /// `kafka_handler_failures_total{event_type}`: failed handler attempts
    /// (a transient one is retried, a permanent one dead-lettered).
    pub failures: IntCounterVec,
    /// `kafka_consumer_partition_waiting_seconds{topic,partition}`: how long
    /// the partition's next event has been failing transiently (0 when it
    /// is not): the partition waits for a dependency to come back.
    pub partition_waiting: GaugeVec,
    /// `outbox_unsent_events`: events waiting to be published.
    pub outbox_unsent: IntGauge,
    /// `outbox_oldest_unsent_seconds`: how long the oldest of them has waited.
    pub outbox_oldest_seconds: Gauge,
    /// `kafka_consumer_lag{topic,partition}`: events not yet consumed.
    pub consumer_lag: IntGaugeVec,
}

impl KafkaMetrics {
    /// The metrics, registered in `metrics`.
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        Self {
            produced: metrics.counter_vec(
                "kafka_events_produced_total",
                "Events published to Kafka, by type",
                &["event_type"],
            ),
            consumed: metrics.counter_vec(
                "kafka_events_consumed_total",
                "Events consumed, by type and outcome",
                &["event_type", "outcome"],
            ),
            failures: metrics.counter_vec(
                "kafka_handler_failures_total",
                "Failed attempts at handling an event, by type",
                &["event_type"],
            ),
            partition_waiting: metrics.gauge_vec(
                "kafka_consumer_partition_waiting_seconds",
                "How long the partition's next event has been failing transiently (0: not waiting)",
                &["topic", "partition"],
            ),
            outbox_unsent: metrics
                .int_gauge("outbox_unsent_events", "Outbox events not yet published"),
            outbox_oldest_seconds: metrics.gauge(
                "outbox_oldest_unsent_seconds",
                "Age of the oldest outbox event not yet published",
            ),
            consumer_lag: metrics.int_gauge_vec(
                "kafka_consumer_lag",
                "Events after the offset this service's group committed, per partition",
                &["topic", "partition"],
            ),
        }
    }
}

/// Starts the outbox relay of `pool` (the topics are made sure of first);
/// it stops on `shutdown`.
pub async fn start_relay(
    pool: &PgPool,
    config: &KafkaConfig,
    metrics: &KafkaMetrics,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    config.ensure_topics().await?;
    Ok(tokio::spawn(outbox::run_relay(
        pool.clone(),
        config.producer()?,
        config.relay_config(),
        metrics.clone(),
        shutdown.clone(),
    )))
}

/// Starts `group`'s consumer of the topic with `handler` and `settings`
/// (a service's are [`KafkaConfig::consumer_config`]); it stops on
/// `shutdown`, or ends with an error after cancelling it (a fatal error).
pub fn start_consumer<H: consumer::Handler>(
    config: &KafkaConfig,
    group: &str,
    handler: H,
    settings: consumer::ConsumerConfig,
    metrics: KafkaMetrics,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), Error>>, Error> {
    let kafka_consumer = config.consumer(group)?;
    rdkafka::consumer::Consumer::subscribe(&*kafka_consumer, &[config.topic.as_str()]).map_err(
        |source| Error::Subscribe {
            topic: config.topic.clone(),
            source,
        },
    )?;
    Ok(tokio::spawn(consumer::run_consumer(
        kafka_consumer,
        config.producer()?,
        handler,
        settings,
        metrics,
        shutdown.clone(),
    )))
}

/// Readiness of the broker: a metadata request answered in time.
#[derive(Clone)]
pub struct BrokerProbe {
    client: std::sync::Arc<rdkafka::producer::BaseProducer>,
}

impl BrokerProbe {
    pub fn new(config: &KafkaConfig) -> Result<Self, Error> {
        let client = config
            .client()
            .create()
            .map_err(|source| config.client_error("client", source))?;
        Ok(Self {
            client: std::sync::Arc::new(client),
        })
    }

    /// Ok when the broker answers within 2 s (librdkafka blocks: off the async workers).
    pub async fn check(&self) -> Result<(), Error> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::client(&*client)
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(Error::Metadata)
        })
        .await
        .map_err(Error::Task)?
    }
}

/// Applies the outbox and inbox tables (their own migration history table,
/// so they never clash with the service's migrations).
pub async fn migrate(pool: &PgPool) -> Result<(), crate::db::DbError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("_sqlx_migrations_kafka");
    migrator
        .run(pool)
        .await
        .map_err(|source| crate::db::DbError::Migration {
            which: "outbox/inbox",
            source,
        })
}

/// The inbox: records `event_id` in the effect's transaction. `false` means
/// the event was processed before, and the caller must do nothing.
#[tracing::instrument(name = "INSERT inbox", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    event: &events::Event,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(event.event_id)
    .bind(event.payload.event_type())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_instance_id_makes_the_consumer_a_static_member() {
        let kafka = KafkaConfig::read(&mut Env::with_overrides(&[(
            "KAFKA_GROUP_INSTANCE_ID",
            "payment-service-0",
        )]));
        let settings = kafka.consumer_settings("payment-service");
        assert_eq!(settings.get("group.instance.id"), Some("payment-service-0"));
        assert_eq!(settings.get("group.id"), Some("payment-service"));

        for unset in [&[][..], &[("KAFKA_GROUP_INSTANCE_ID", "")][..]] {
            let kafka = KafkaConfig::read(&mut Env::with_overrides(unset));
            assert_eq!(kafka.consumer_settings("g").get("group.instance.id"), None);
        }
    }

    #[test]
    fn a_consumer_fetches_ahead_at_most_its_configured_queue() {
        let queue = |vars: &[(&str, &str)]| {
            let kafka = KafkaConfig::read(&mut Env::with_overrides(vars));
            let settings = kafka.consumer_settings("g");
            settings
                .get("queued.max.messages.kbytes")
                .map(str::to_owned)
        };
        assert_eq!(
            queue(&[]).as_deref(),
            Some("4096"),
            "librdkafka's 64 MB is not the default"
        );
        assert_eq!(
            queue(&[("KAFKA_CONSUMER_QUEUE_KB", "512")]).as_deref(),
            Some("512")
        );
    }
}
