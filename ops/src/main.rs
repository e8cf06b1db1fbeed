//! `minishop-ops`: see the crate docs ([`ops`]), docs/saga.md, "Dead
//! letters", and docs/operations.md, "Events at the terminal".

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use ops::dlq::{self, Selection};
use ops::events::{self, Filter, TailOptions};

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
    /// Prints the topic's events, one line each (or JSON): from now on, or
    /// from the oldest kept; until Ctrl-C, or to the end with --exit.
    Tail {
        /// From the oldest event kept, not only new ones.
        #[arg(long)]
        from_beginning: bool,
        /// Stop at the topic's end (as it was when tail started).
        #[arg(long, short = 'e')]
        exit: bool,
        /// Only this order's events.
        #[arg(long)]
        order: Option<String>,
        /// Only events of this type (may be given more than once).
        #[arg(long = "type")]
        event_types: Vec<String>,
        /// One JSON object per line: partition, offset, key, headers, event.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<usize>,
    },
    /// How far each consumer group is behind on the topic, per partition.
    Lag {
        /// Only this group (may be given more than once); default: every
        /// group with offsets on the topic.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Put in front of the saga's group names when the broker cannot
        /// list its groups (the services' KAFKA_GROUP_PREFIX).
        #[arg(long, env = "KAFKA_GROUP_PREFIX", default_value = "")]
        group_prefix: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Prints the AsyncAPI document of the topic's events (docs/asyncapi.yaml).
    Asyncapi {
        /// As JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
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
    let command = match cli.command {
        Command::Tail {
            from_beginning,
            exit,
            order,
            event_types,
            json,
            max,
        } => {
            let filter = Filter { order, event_types };
            let options = TailOptions {
                from_beginning,
                last: None,
                exit_at_end: exit,
                max,
            };
            let stopped = Arc::new(AtomicBool::new(false));
            let on_signal = stopped.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_signal.store(true, Ordering::SeqCst);
                }
            });
            let printed = tokio::task::spawn_blocking(move || {
                let stop = || stopped.load(Ordering::SeqCst);
                events::tail(
                    &cli.brokers,
                    &cli.topic,
                    &filter,
                    options,
                    &stop,
                    &mut |record| {
                        if json {
                            println!("{}", record.to_json());
                        } else {
                            println!("{}", record.line());
                        }
                    },
                )
            })
            .await??;
            eprintln!("{printed} events");
            return Ok(());
        }
        Command::Lag {
            groups,
            group_prefix,
            json,
        } => {
            let lags = tokio::task::spawn_blocking(move || {
                events::lag(&cli.brokers, &cli.topic, &groups, &group_prefix)
            })
            .await??;
            if !json {
                println!("{}", events::lag_header());
            }
            for lag in &lags {
                if json {
                    println!("{}", lag.to_json());
                } else {
                    println!("{}", lag.line());
                }
            }
            return Ok(());
        }
        Command::Asyncapi { json } => {
            let document = shared::kafka::contract::asyncapi(&cli.topic);
            if json {
                println!("{}", serde_json::to_string_pretty(&document)?);
            } else {
                print!("{}", shared::kafka::contract::to_yaml(&document));
            }
            return Ok(());
        }
        Command::Dlq { command } => command,
    };
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
