//! `loadgen`: drives minishop's real HTTP API like real users (browse, view,
//! log in, place single- and multi-item orders, poll them) from a weighted
//! mix, closed-loop at a concurrency or open-loop at a target rate, for a
//! duration, with a progress bar; then waits for the run's orders to settle
//! and reports per operation count, errors by status, throughput and
//! latency p50/p90/p99/max, and the saga's completion latency. `--json`
//! writes the same report for scripts (scripts/bench.sh, scripts/chaos.sh).
//!
//! It seeds its own customers and products through the API with the admin's
//! credentials, so it runs against any deployment.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use rand::seq::IndexedRandom;

use loadgen::api::{Api, Outcome, PAGE, Urls};
use loadgen::mix::{Mix, Op};
use loadgen::seed::{self, World};
use loadgen::stats::{Latency, Report, SagaReport, Stats};

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for minishop's REST API")]
struct Args {
    /// user-service base URL.
    #[arg(long, env = "USER_URL", default_value = "http://127.0.0.1:8080")]
    user_url: String,
    /// product-service base URL.
    #[arg(long, env = "PRODUCT_URL", default_value = "http://127.0.0.1:8081")]
    product_url: String,
    /// order-service base URL; replicas as a comma-separated list (calls go
    /// round robin, and a refused connection tries the next one).
    #[arg(
        long,
        env = "ORDER_URL",
        default_value = "http://127.0.0.1:8082",
        value_delimiter = ','
    )]
    order_url: Vec<String>,
    /// The admin who creates the run's products.
    #[arg(long, env = "ADMIN_EMAIL", default_value = "admin@minishop.local")]
    admin_email: String,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Open loop: start this many operations per second whatever the answers
    /// (latency is measured from each one's scheduled start).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: this many users, each starting its next operation when
    /// the last one answered (after waiting out a refusal's Retry-After).
    /// With --rate: the most operations in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Weights of the operations.
    #[arg(
        long,
        default_value = "browse=30,view=30,login=5,order=20,order_multi=5,poll=10"
    )]
    mix: Mix,
    /// Customers to register for the run.
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Products to create for the run.
    #[arg(long, default_value_t = 20)]
    products: usize,
    /// Stock of each product (large: the load measures, it does not sell out).
    #[arg(long, default_value_t = 1_000_000)]
    stock: u32,
    /// After the load, how long to wait for the run's orders to settle.
    #[arg(long, default_value_t = 60.0)]
    settle: f64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// An order the run placed: who placed it.
#[derive(Clone, Copy)]
struct Placed {
    id: i64,
    customer: usize,
}

/// What the workers share.
struct Shared {
    api: Api,
    world: World,
    mix: Mix,
    stats: Mutex<Stats>,
    placed: Mutex<Vec<Placed>>,
    done: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    /// Runs one operation as a random customer; records it from `started`.
    /// Returns how long a refused caller was told to wait (`Retry-After`).
    async fn one(&self, op: Op, started: Instant) -> Option<Duration> {
        let (customer_index, customer, product, n) = {
            let mut rng = rand::rng();
            let i = rng.random_range(0..self.world.customers.len());
            let product = *self
                .world
                .products
                .choose(&mut rng)
                .expect("products were seeded");
            let n = rng.random_range(0..self.world.products.len());
            (i, &self.world.customers[i], product, n)
        };
        let answer = match op {
            Op::Browse => {
                let pages = (self.world.products.len() as u32).div_ceil(20).max(1);
                let offset = (n as u32 % pages) * 20;
                self.api.list_products(20, offset).await
            }
            Op::View => self.api.product(product).await,
            Op::Login => self.api.login(&customer.email, &customer.password).await,
            Op::Order | Op::OrderMulti => {
                let items = self.items(op);
                let answer = self.api.place_order(&customer.token, &items).await;
                if let Some(id) = answer.body.as_ref().and_then(|b| b["id"].as_i64())
                    && answer.outcome == Outcome::Status(201)
                {
                    self.placed.lock().expect("not poisoned").push(Placed {
                        id,
                        customer: customer_index,
                    });
                }
                answer
            }
            Op::Poll => {
                let mine = {
                    let placed = self.placed.lock().expect("not poisoned");
                    let mut rng = rand::rng();
                    placed
                        .iter()
                        .rev()
                        .take(200)
                        .filter(|p| p.customer == customer_index)
                        .map(|p| p.id)
                        .collect::<Vec<_>>()
                        .choose(&mut rng)
                        .copied()
                };
                match mine {
                    Some(id) => self.api.order(&customer.token, id).await,
                    None => self.api.my_orders(&customer.token).await,
                }
            }
        };
        let latency = started.elapsed();
        if !answer.outcome.is_ok() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        self.stats
            .lock()
            .expect("not poisoned")
            .record(op, answer.outcome, latency);
        answer.retry_after
    }

    /// One item (quantity 1-3), or 2-4 distinct products for a multi-item order.
    fn items(&self, op: Op) -> Vec<(i64, u32)> {
        let mut rng = rand::rng();
        let lines = match op {
            Op::OrderMulti => rng.random_range(2..=4).min(self.world.products.len()),
            _ => 1,
        };
        self.world
            .products
            .choose_multiple(&mut rng, lines)
            .map(|p| (*p, rng.random_range(1..=3)))
            .collect()
    }
}

fn bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}

/// Drives the load until `duration` is over; returns how long it took and
/// the wall-clock instant it ended.
async fn drive(shared: Arc<Shared>, args: &Args) -> (Duration, chrono::DateTime<chrono::Utc>) {
    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let deadline = start + duration;
    let progress = bar(
        args.quiet,
        duration.as_secs().max(1),
        "{spinner} [{bar:30}] {pos}/{len} s  {msg}",
    );
    let ticker = {
        let shared = shared.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let secs = start.elapsed().as_secs_f64();
                let done = shared.done.load(Ordering::Relaxed);
                progress.set_position(secs as u64);
                progress.set_message(format!(
                    "{done} requests, {:.0} req/s, {} errors, {} orders",
                    done as f64 / secs.max(1e-3),
                    shared.failed.load(Ordering::Relaxed),
                    shared.placed.lock().expect("not poisoned").len()
                ));
            }
        })
    };
    match args.rate {
        None => {
            let workers: Vec<_> = (0..args.concurrency.max(1))
                .map(|_| {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let op = shared.mix.pick(&mut rand::rng());
                            // A refused user waits as told, as a real
                            // client does, instead of hammering at once.
                            if let Some(wait) = shared.one(op, Instant::now()).await {
                                tokio::time::sleep_until(
                                    deadline.min(Instant::now() + wait).into(),
                                )
                                .await;
                            }
                        }
                    })
                })
                .collect();
            futures::future::join_all(workers).await;
        }
        Some(rate) => {
            // Operations start on schedule whether or not earlier ones have
            // answered; latency counts from the scheduled instant, so a slow
            // system cannot hide its queueing (no coordinated omission).
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let in_flight = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            let mut next = Instant::now();
            while next < deadline {
                tokio::time::sleep_until(next.into()).await;
                let scheduled = next;
                next += interval;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let shared = shared.clone();
                tasks.spawn(async move {
                    let op = shared.mix.pick(&mut rand::rng());
                    shared.one(op, scheduled).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    progress.finish_and_clear();
    (elapsed, chrono::Utc::now())
}

/// Waits for the run's orders to reach a terminal status, then measures them.
async fn settle(
    shared: &Shared,
    args: &Args,
    elapsed: Duration,
    ended: chrono::DateTime<chrono::Utc>,
) -> SagaReport {
    let placed = shared.placed.lock().expect("not poisoned").clone();
    let progress = bar(
        args.quiet,
        placed.len() as u64,
        "settling orders [{bar:30}] {pos}/{len}",
    );
    let deadline = Instant::now() + Duration::from_secs_f64(args.settle);
    let mut waiting: Vec<Placed> = placed.clone();
    let mut finished: Vec<serde_json::Value> = Vec::new();
    loop {
        // Which waiting orders are no longer pending: one list call per
        // customer, rather than a read of every waiting order each round.
        let mut by_customer: HashMap<usize, Vec<Placed>> = HashMap::new();
        for p in waiting {
            by_customer.entry(p.customer).or_default().push(p);
        }
        let by_customer: Vec<(usize, Vec<Placed>)> = by_customer.into_iter().collect();
        let lists = futures::future::join_all(by_customer.iter().map(|(customer, _)| {
            let token = &shared.world.customers[*customer].token;
            shared.api.pending_orders(token)
        }))
        .await;
        let mut still = Vec::new();
        let mut done = Vec::new();
        for ((_, orders), list) in by_customer.into_iter().zip(lists) {
            // A full page may not show them all: ask again next round.
            let pending: Option<HashSet<i64>> = list
                .body
                .as_ref()
                .and_then(|b| b.as_array())
                .filter(|page| page.len() < PAGE)
                .map(|page| page.iter().filter_map(|o| o["id"].as_i64()).collect());
            match pending {
                Some(pending) => {
                    let (waits, ended) = orders.into_iter().partition(|o| pending.contains(&o.id));
                    still.extend::<Vec<Placed>>(waits);
                    done.extend::<Vec<Placed>>(ended);
                }
                None => still.extend(orders),
            }
        }
        // Each settled order is read once, for its final status and times,
        // at most `concurrency` at a time: all at once, thousands of reads
        // were the largest load order-service saw, and its peak RSS was
        // theirs, not the saga's.
        let answers: Vec<_> = futures::stream::iter(done.iter().map(|p| {
            let token = &shared.world.customers[p.customer].token;
            shared.api.order(token, p.id)
        }))
        .buffered(args.concurrency.max(1))
        .collect()
        .await;
        for (p, answer) in done.into_iter().zip(answers) {
            match answer.body {
                Some(body) if !matches!(body["status"].as_str(), Some("pending") | None) => {
                    finished.push(body);
                }
                _ => still.push(p),
            }
        }
        waiting = still;
        progress.set_position((placed.len() - waiting.len()) as u64);
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    progress.finish_and_clear();
    let mut report = SagaReport {
        orders_created: placed.len() as u64,
        ..SagaReport::default()
    };
    let mut completion =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let mut in_window = 0u64;
    for order in &finished {
        let status = order["status"].as_str().unwrap_or("unknown").to_owned();
        *report.outcomes.entry(status).or_default() += 1;
        let at = |field: &str| {
            order[field]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        if let (Some(created), Some(updated)) = (at("created_at"), at("updated_at")) {
            let micros = (updated - created).num_microseconds().unwrap_or(0).max(1) as u64;
            completion.saturating_record(micros);
            if updated <= ended {
                in_window += 1;
            }
        }
    }
    if !waiting.is_empty() {
        report
            .outcomes
            .insert("pending".into(), waiting.len() as u64);
    }
    report.completed_per_second = in_window as f64 / elapsed.as_secs_f64().max(1e-9);
    if !completion.is_empty() {
        report.completion = Some(Latency::of(&completion));
    }
    report
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(
        args.users > 0 && args.products > 0,
        "--users and --products must be positive"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let api = Api::new(
        Urls {
            user: args.user_url.trim_end_matches('/').to_owned(),
            product: args.product_url.trim_end_matches('/').to_owned(),
            order: args
                .order_url
                .iter()
                .map(|url| url.trim().trim_end_matches('/').to_owned())
                .collect(),
        },
        args.concurrency,
    )?;
    eprintln!(
        "seeding {} customers and {} products through the API ...",
        args.users, args.products
    );
    let world = seed::seed(
        &api,
        &args.admin_email,
        &args.admin_password,
        args.users,
        args.products,
        args.stock,
    )
    .await?;
    let mode = match args.rate {
        Some(rate) => format!(
            "open loop at {rate} ops/s (at most {} in flight)",
            args.concurrency
        ),
        None => format!("closed loop with {} users", args.concurrency),
    };
    eprintln!("{mode}, {} s ...", args.duration);
    let shared = Arc::new(Shared {
        api,
        world,
        mix: args.mix.clone(),
        stats: Mutex::new(Stats::default()),
        placed: Mutex::new(Vec::new()),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let (elapsed, ended) = drive(shared.clone(), &args).await;
    let saga = settle(&shared, &args, elapsed, ended).await;
    let stats = shared.stats.lock().expect("not poisoned").clone();
    let report = Report::new(mode, &stats, elapsed, saga);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}
