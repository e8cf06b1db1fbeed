//! `seed_demo`: the demo catalogue and customer of `make seed`
//! (`scripts/seed.sh` passes the credentials), through the API, with the
//! same seeding code as the load (`loadgen::seed`). Running it again
//! changes nothing.

use anyhow::Context;
use clap::Parser;
use loadgen::api::{Api, Urls};
use loadgen::seed;

#[derive(Parser, Debug)]
#[command(about = "Loads minishop's demo catalogue and demo customer through its API")]
struct Args {
    #[arg(long, env = "USER_URL", default_value = "http://127.0.0.1:8080")]
    user_url: String,
    #[arg(long, env = "PRODUCT_URL", default_value = "http://127.0.0.1:8081")]
    product_url: String,
    #[arg(long, env = "ADMIN_EMAIL", default_value = "admin@minishop.local")]
    admin_email: String,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    #[arg(long, env = "DEMO_EMAIL", default_value = "demo@minishop.local")]
    demo_email: String,
    #[arg(long, env = "DEMO_PASSWORD", hide_env_values = true)]
    demo_password: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = Api::new(
        Urls {
            user: args.user_url.trim_end_matches('/').to_owned(),
            product: args.product_url.trim_end_matches('/').to_owned(),
            // Seeding places no order.
            order: vec![String::new()],
        },
        4,
    )?;
    let admin = seed::log_in(&api, &args.admin_email, &args.admin_password)
        .await
        .with_context(|| format!("the admin could not log in at {}", args.user_url))?;
    let done = seed::seed_demo(&api, &admin, &args.demo_email, &args.demo_password).await?;
    println!(
        "catalogue: {} products created, {} already there",
        done.created, done.kept
    );
    let email = &args.demo_email;
    if done.registered {
        println!("demo customer {email} registered");
    } else {
        println!("demo customer {email} already registered");
    }
    if done.can_log_in {
        println!(
            "log in as {email} / {} and place an order:\n  curl -s -X POST {}/api/v1/login -H \"Content-Type: application/json\" -d '{{\"email\":\"{email}\",\"password\":\"{}\"}}'",
            args.demo_password, args.user_url, args.demo_password
        );
    } else {
        println!("warning: {email} was registered earlier with another password; left as it is");
    }
    Ok(())
}
