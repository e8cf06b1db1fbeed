//! `produce_bound`: the broker's produce rate, a bound for scripts/bench.sh.
//! Sends `--messages` messages of `--size` bytes (a saga event is ~400)
//! through an idempotent producer with `acks=all`, as the outbox relay
//! publishes, keyed over 1000 keys, with up to `--in-flight` unacknowledged;
//! prints `messages=.. seconds=.. msgs_per_sec=..`.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    #[arg(long, default_value_t = 400)]
    size: usize,
    #[arg(long, default_value_t = 1_000)]
    in_flight: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let topic = format!("bench_produce_{}", uuid::Uuid::new_v4().simple());
    let kafka = shared::kafka::KafkaConfig::at(&args.brokers);
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                args.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for result in created {
        result.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
    }
    let producer: FutureProducer = kafka
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let payload = vec![b'x'; args.size];
    let start = Instant::now();
    let mut sends = futures::stream::iter(0..args.messages)
        .map(|i| {
            let key = (i % 1000).to_string();
            let producer = &producer;
            let topic = &topic;
            let payload = &payload;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(&key)
                            .payload(payload.as_slice()),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .buffer_unordered(args.in_flight.max(1));
    let mut failed = 0usize;
    while let Some(result) = sends.next().await {
        if result.is_err() {
            failed += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} messages were not acknowledged",
        args.messages
    );
    println!(
        "messages={} seconds={secs:.2} msgs_per_sec={:.0}",
        args.messages,
        args.messages as f64 / secs
    );
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}
