//! Kafka plumbing every saga service uses: the event types ([`events`]),
//! the transactional outbox and its relay ([`outbox`]), the inbox
//! ([`claim`]), and the consumer with retries and a dead-letter topic
//! ([`consumer`]). Their tables live in `shared/migrations/`, applied by
//! [`migrate`] next to each service's own migrations.

pub mod consumer;
pub mod events;
pub mod outbox;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use sqlx::{PgPool, Postgres, Transaction};

use crate::config::Env;

/// Where the broker is and which topic the saga uses.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `KAFKA_BROKERS`: bootstrap servers.
    pub brokers: String,
    /// `KAFKA_TOPIC`: the one topic of every producer and consumer.
    pub topic: String,
    /// `KAFKA_PARTITIONS`: partitions of the topic when this service creates it.
    pub partitions: i32,
}

impl KafkaConfig {
    pub fn read(env: &mut Env) -> Self {
        Self {
            brokers: env.get("KAFKA_BROKERS", "127.0.0.1:9092".into()),
            topic: env.get("KAFKA_TOPIC", "order_events".into()),
            partitions: env.in_range("KAFKA_PARTITIONS", 6, 1..=1000),
        }
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }

    /// An idempotent producer that waits for every in-sync replica.
    pub fn producer(&self) -> Result<FutureProducer, String> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5")
            .create()
            .map_err(|e| format!("cannot create a Kafka producer for {}: {e}", self.brokers))
    }

    /// A consumer of `group` that commits offsets only when told to.
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer, String> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()
            .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", self.brokers))
    }

    /// Creates the topic and its dead-letter topic unless they exist.
    pub async fn ensure_topics(&self) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
        let dlq = self.dlq_topic();
        let topics = [
            NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(|e| format!("cannot reach the Kafka broker at {}: {e}", self.brokers))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, e)) => return Err(format!("cannot create topic {topic}: {e}")),
            }
        }
        Ok(())
    }
}

/// Applies the outbox and inbox tables (their own migration history table,
/// so they never clash with the service's migrations).
pub async fn migrate(pool: &PgPool) -> Result<(), String> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("_sqlx_migrations_kafka");
    migrator
        .run(pool)
        .await
        .map_err(|e| format!("outbox/inbox migration failed: {e}"))
}

/// The inbox: records `event_id` in the effect's transaction. `false` means
/// the event was processed before, and the caller must do nothing.
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
