//! `minishop-ops`: see the crate docs ([`ops`]) and docs/saga.md,
//! "Dead letters".

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ops::dlq::{self, Selection};

#[derive(Parser)]
#[command(
    name = "minishop-ops",
    about = "Operator commands for minishop's event topic"
)]
struct Cli {
    /// The broker's bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    brokers: String,
    /// The saga's topic (its dead-letter topic is `<topic>.dlq`).
    #[arg(
        long,
        env = "KAFKA_TOPIC",
        default_value = "order_events",
        global = true
    )]
    topic: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The dead-letter topic.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One line per dead letter: offset, origin, type, order, event id, error.
    List {
        /// One JSON object per line instead.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full: error, origin, headers and payload.
    Show {
        /// Its offset in the dead-letter topic (as `list` prints it).
        offset: i64,
    },
    /// Sends dead letters back to their original topic (key, headers and
    /// event id kept); consumers that applied one already do nothing.
    Replay {
        /// Only the letter at this offset (may be given more than once).
        #[arg(long = "offset")]
        offsets: Vec<i64>,
        /// Only letters of this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only letters of this order (the message key).
        #[arg(long)]
        order: Option<String>,
        /// Only letters whose error contains this text.
        #[arg(long)]
        error_contains: Option<String>,
        /// Every letter (needed when no filter is given).
        #[arg(long)]
        all: bool,
        /// Print what would be replayed, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minishop-ops: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Dlq { command } = cli.command;
    let dlq_topic = format!("{}.dlq", cli.topic);
    let letters = {
        let (brokers, topic) = (cli.brokers.clone(), dlq_topic.clone());
        tokio::task::spawn_blocking(move || dlq::read_all(&brokers, &topic)).await??
    };
    match command {
        DlqCommand::List { json } => {
            for letter in &letters {
                if json {
                    println!("{}", letter.to_json());
                } else {
                    println!("{}", letter.line());
                }
            }
            if !json {
                eprintln!("{} dead letters on {dlq_topic}", letters.len());
            }
        }
        DlqCommand::Show { offset } => {
            let letter = letters.iter().find(|l| l.offset == offset).ok_or_else(|| {
                anyhow::anyhow!("no dead letter at offset {offset} of {dlq_topic}")
            })?;
            println!("{}", serde_json::to_string_pretty(&letter.to_json())?);
        }
        DlqCommand::Replay {
            offsets,
            event_type,
            order,
            error_contains,
            all,
            dry_run,
        } => {
            let selection = Selection {
                all,
                offsets,
                event_type,
                order,
                error_contains,
            };
            if dry_run {
                let chosen: Vec<_> = letters.iter().filter(|l| selection.selects(l)).collect();
                for letter in &chosen {
                    println!("would replay {}", letter.line());
                }
                eprintln!(
                    "{} of {} dead letters would be replayed",
                    chosen.len(),
                    letters.len()
                );
            } else {
                let sent = dlq::replay(&cli.brokers, &letters, &selection, &cli.topic).await?;
                eprintln!(
                    "replayed {sent} of {} dead letters onto their topic",
                    letters.len()
                );
            }
        }
    }
    Ok(())
}
