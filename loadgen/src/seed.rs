//! Seeding through the API, written once: the load's own customers and
//! products ([`seed`], so the load runs against any deployment), and the
//! demo catalogue and customer of `make seed` ([`seed_demo`], the
//! `seed_demo` binary). The admin creates the products.

use std::collections::HashSet;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::api::{Api, Outcome, PAGE};

/// A customer of the run.
pub struct Customer {
    pub email: String,
    pub password: String,
    pub token: String,
}

/// What the load works with.
pub struct World {
    pub customers: Vec<Customer>,
    pub products: Vec<i64>,
}

/// The token of `email`, waiting out rate limits.
pub async fn log_in(api: &Api, email: &str, password: &str) -> anyhow::Result<String> {
    let login = Api::patiently("log in", || api.login(email, password))
        .await
        .with_context(|| format!("{email} cannot log in"))?;
    Ok(login["token"]
        .as_str()
        .context("login gave no token")?
        .to_owned())
}

/// Creates `product` (`{name, price, stock}`) as the admin; its id.
pub async fn create_product(api: &Api, admin_token: &str, product: &Value) -> anyhow::Result<i64> {
    let created = Api::patiently("create a product", || {
        api.create_product(admin_token, product)
    })
    .await?;
    created["id"].as_i64().context("product without id")
}

/// Registers a customer: `true`, or `false` when the email is taken already.
pub async fn register(api: &Api, name: &str, email: &str, password: &str) -> anyhow::Result<bool> {
    for _ in 0..120 {
        let answer = api.register(name, email, password).await;
        match answer.outcome {
            Outcome::Status(s) if (200..300).contains(&s) => return Ok(true),
            Outcome::Status(409) => return Ok(false),
            Outcome::Status(429) | Outcome::Status(503) | Outcome::Io => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Outcome::Status(s) => bail!("register {email}: HTTP {s}: {:?}", answer.body),
        }
    }
    bail!("register {email}: still refused after 2 minutes of retries")
}

/// The names of every live product, a page at a time.
pub async fn product_names(api: &Api) -> anyhow::Result<HashSet<String>> {
    let mut names = HashSet::new();
    let mut offset = 0;
    loop {
        let page =
            Api::patiently("list products", || api.list_products(PAGE as u32, offset)).await?;
        let page = page
            .as_array()
            .context("the product list is not an array")?;
        if page.is_empty() {
            return Ok(names);
        }
        names.extend(
            page.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned)),
        );
        offset += PAGE as u32;
    }
}

/// The load's own customers and products, named after a fresh run id.
pub async fn seed(
    api: &Api,
    admin_email: &str,
    admin_password: &str,
    users: usize,
    products: usize,
    stock: u32,
) -> anyhow::Result<World> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..8];
    let admin_token = log_in(api, admin_email, admin_password)
        .await
        .context("the admin cannot log in (ADMIN_EMAIL / ADMIN_PASSWORD)")?;
    let mut product_ids = Vec::with_capacity(products);
    for i in 0..products {
        // Prices stay far below PAYMENT_MAX_AMOUNT: declines are the gateway's random ones.
        let product = json!({
            "name": format!("loadgen {run} product {i}"),
            "price": 1.0 + (i % 40) as f64,
            "stock": stock,
        });
        product_ids.push(create_product(api, &admin_token, &product).await?);
    }
    let mut customers = Vec::with_capacity(users);
    for i in 0..users {
        let email = format!("loadgen-{run}-{i}@minishop.local");
        let password = format!("loadgen-{run}-pw");
        register(api, &format!("Loadgen {i}"), &email, &password).await?;
        let token = log_in(api, &email, &password).await?;
        customers.push(Customer {
            email,
            password,
            token,
        });
    }
    Ok(World {
        customers,
        products: product_ids,
    })
}

/// The demo catalogue: name, price, stock. The piano is over
/// `PAYMENT_MAX_AMOUNT` (10000.00), so ordering it shows a declined payment.
pub const DEMO_CATALOGUE: &[(&str, f64, u32)] = &[
    ("Espresso cup, stoneware", 9.50, 120),
    ("Pour-over coffee kettle", 44.90, 35),
    ("Burr coffee grinder", 129.00, 20),
    ("Single-origin beans, 1 kg", 27.80, 200),
    ("Cast-iron skillet, 26 cm", 39.99, 40),
    ("Chef knife, 20 cm", 89.00, 25),
    ("Linen apron", 24.50, 60),
    ("Wool throw blanket", 74.00, 30),
    ("Desk lamp, brass", 119.00, 15),
    ("Notebook, dotted A5", 12.90, 300),
    ("Fountain pen", 58.00, 45),
    ("Bicycle bell", 14.20, 80),
    (
        "Grand piano (forces a payment decline: over 10000.00)",
        15999.00,
        2,
    ),
];

/// What [`seed_demo`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct DemoSeeded {
    pub created: usize,
    /// Catalogue products that were there already (by name).
    pub kept: usize,
    /// Whether the demo customer was registered now (not before).
    pub registered: bool,
    /// Whether the demo customer can log in with the given password.
    pub can_log_in: bool,
}

/// Creates the catalogue products that no live product is named after, and
/// registers the demo customer unless its email is taken. Running it again
/// changes nothing.
pub async fn seed_demo(
    api: &Api,
    admin_token: &str,
    demo_email: &str,
    demo_password: &str,
) -> anyhow::Result<DemoSeeded> {
    let existing = product_names(api).await?;
    let (mut created, mut kept) = (0, 0);
    for (name, price, stock) in DEMO_CATALOGUE {
        if existing.contains(*name) {
            kept += 1;
            continue;
        }
        let product = json!({"name": name, "price": price, "stock": stock});
        create_product(api, admin_token, &product).await?;
        created += 1;
    }
    let registered = register(api, "Demo Customer", demo_email, demo_password).await?;
    let can_log_in = log_in(api, demo_email, demo_password).await.is_ok();
    Ok(DemoSeeded {
        created,
        kept,
        registered,
        can_log_in,
    })
}
