//! Seeds the run's own customers and products through the API (the admin
//! creates the products), so the load runs against any deployment.

use anyhow::Context;
use serde_json::json;

use crate::api::Api;

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
    let admin = Api::patiently("admin login", || api.login(admin_email, admin_password))
        .await
        .context("the admin cannot log in (ADMIN_EMAIL / ADMIN_PASSWORD)")?;
    let admin_token = admin["token"]
        .as_str()
        .context("login gave no token")?
        .to_owned();
    let mut product_ids = Vec::with_capacity(products);
    for i in 0..products {
        // Prices stay far below PAYMENT_MAX_AMOUNT: declines are the gateway's random ones.
        let product = json!({
            "name": format!("loadgen {run} product {i}"),
            "price": 1.0 + (i % 40) as f64,
            "stock": stock,
        });
        let created = Api::patiently("create a product", || {
            api.create_product(&admin_token, &product)
        })
        .await?;
        product_ids.push(created["id"].as_i64().context("product without id")?);
    }
    let mut customers = Vec::with_capacity(users);
    for i in 0..users {
        let email = format!("loadgen-{run}-{i}@minishop.local");
        let password = format!("loadgen-{run}-pw");
        let name = format!("Loadgen {i}");
        Api::patiently("register", || api.register(&name, &email, &password)).await?;
        let login = Api::patiently("customer login", || api.login(&email, &password)).await?;
        let token = login["token"]
            .as_str()
            .context("login gave no token")?
            .to_owned();
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
