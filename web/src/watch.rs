//! What the console shows of the broker that takes a round of broker
//! requests (each consumer group's lag per partition, the dead letters'
//! count): measured in the background every few seconds, so that a page
//! never waits for the broker, and shown with the time it was measured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ops::events::Lag;
use shared::kafka::KafkaConfig;
use shared::shutdown::CancellationToken;

/// The last measurement; `Err` says why one part could not be measured.
#[derive(Debug, Clone)]
pub struct BrokerView {
    pub lag: Result<Vec<Lag>, String>,
    pub dead_letters: Result<i64, String>,
    /// When it was measured (`None`: not yet).
    pub at: Option<DateTime<Utc>>,
}

impl Default for BrokerView {
    fn default() -> Self {
        const WAITING: &str = "not measured yet";
        Self {
            lag: Err(WAITING.into()),
            dead_letters: Err(WAITING.into()),
            at: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Watch {
    view: Mutex<BrokerView>,
}

impl Watch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn view(&self) -> BrokerView {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Measures `kafka`'s topic every `every` until `shutdown`.
    pub fn start(
        self: &Arc<Self>,
        kafka: &KafkaConfig,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let watch = self.clone();
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || {
            while !shutdown.is_cancelled() {
                let lag = ops::events::lag(&kafka.brokers, &kafka.topic, &[], &kafka.group_prefix)
                    .map_err(|e| format!("{e:#}"));
                let dead_letters = ops::events::count(&kafka.brokers, &kafka.dlq_topic())
                    .map_err(|e| format!("{e:#}"));
                *watch.view.lock().unwrap_or_else(|e| e.into_inner()) = BrokerView {
                    lag,
                    dead_letters,
                    at: Some(Utc::now()),
                };
                let started = std::time::Instant::now();
                while started.elapsed() < every && !shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
    }
}
