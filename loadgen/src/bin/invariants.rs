//! `invariants`: checks the invariants (docs/saga.md) across the five databases and the
//! dead-letter topic; prints a table and exits 1 on any violation.

use clap::Parser;
use loadgen::invariants::{Sources, check};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Checks minishop's saga invariants after a run has settled"
)]
struct Args {
    #[arg(
        long,
        env = "PRODUCT_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/productdb"
    )]
    product_db: String,
    #[arg(
        long,
        env = "ORDER_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orderdb"
    )]
    order_db: String,
    #[arg(
        long,
        env = "PAYMENT_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/paymentdb"
    )]
    payment_db: String,
    #[arg(
        long,
        env = "NOTIFICATION_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/notificationdb"
    )]
    notification_db: String,
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "order_events.dlq")]
    dlq_topic: String,
    /// Only orders and events created at or after this RFC 3339 instant.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Products whose name starts with this were seeded with --seeded-stock
    /// units (loadgen's are "loadgen "): check that their units are conserved.
    #[arg(long, requires = "seeded_stock")]
    seeded_prefix: Option<String>,
    #[arg(long)]
    seeded_stock: Option<i64>,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let sources = Sources {
        product_db: args.product_db,
        order_db: args.order_db,
        payment_db: args.payment_db,
        notification_db: args.notification_db,
        brokers: args.brokers,
        dlq_topic: args.dlq_topic,
        since: args.since,
        seeded: args.seeded_prefix.zip(args.seeded_stock),
    };
    match check(&sources).await {
        Ok(verdict) => {
            print!("{}", verdict.table());
            if let Some(path) = &args.json {
                let written = serde_json::to_string_pretty(&verdict)
                    .map_err(|e| e.to_string())
                    .and_then(|j| std::fs::write(path, j).map_err(|e| e.to_string()));
                if let Err(e) = written {
                    eprintln!("invariants: cannot write {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
            if verdict.ok() {
                println!("all invariants hold");
                std::process::ExitCode::SUCCESS
            } else {
                println!("INVARIANTS VIOLATED");
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("invariants: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
