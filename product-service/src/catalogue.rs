//! The catalogue: products listed, read, created, updated (with their
//! version, for `If-Match`) and deleted (soft: reservations keep pointing
//! at them).

use shared::db::Listing;
use shared::http::Page;
use shared::money::Money;
use sqlx::FromRow;

use crate::model::{NewProduct, Product, ProductPatch};
use crate::store::Store;

const PRODUCT_COLUMNS: &str =
    "id, name, (price * 100)::bigint AS price_cents, stock, version, created_at, updated_at";

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("product not found")]
    NotFound,
    #[error("stale version: the product is at version {current}")]
    Stale { current: i64 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Store {
    /// One page of live products by id (those whose name contains
    /// `search`, if given), and how many there are in all.
    #[tracing::instrument(name = "SELECT products", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn list(
        &self,
        search: Option<&str>,
        page: Page,
    ) -> Result<(Vec<Product>, i64), sqlx::Error> {
        Listing::of("products", PRODUCT_COLUMNS)
            .condition("deleted_at IS NULL")
            .containing("name", search)
            .fetch_as(self.live()?, page)
            .await
    }

    #[tracing::instrument(name = "SELECT products", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn get(&self, id: i64) -> Result<Option<Product>, sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(self.live()?)
        .await?
        .as_ref()
        .map(Product::from_row)
        .transpose()
    }

    #[tracing::instrument(name = "INSERT products", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn create(&self, new: &NewProduct) -> Result<Product, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO products (name, price, stock) VALUES ($1, $2::bigint::numeric / 100, $3) \
             RETURNING {PRODUCT_COLUMNS}"
        )))
        .bind(&new.name)
        .bind(new.price.cents())
        .bind(new.stock)
        .fetch_one(self.live()?)
        .await?;
        Product::from_row(&row)
    }

    /// Applies the fields that are set; with `expected_version`, only if the
    /// product is still at that version.
    #[tracing::instrument(name = "UPDATE products", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn update(
        &self,
        id: i64,
        patch: &ProductPatch,
        expected_version: Option<i64>,
    ) -> Result<Product, UpdateError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE products SET \
                name = COALESCE($2, name), \
                price = COALESCE($3::bigint::numeric / 100, price), \
                stock = COALESCE($4, stock), \
                version = version + 1, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL AND ($5::bigint IS NULL OR version = $5) \
             RETURNING {PRODUCT_COLUMNS}"
        )))
        .bind(id)
        .bind(patch.name.as_deref())
        .bind(patch.price.map(Money::cents))
        .bind(patch.stock)
        .bind(expected_version)
        .fetch_optional(self.live()?)
        .await?;
        match row {
            Some(row) => Ok(Product::from_row(&row)?),
            None => match self.current_version(id).await? {
                None => Err(UpdateError::NotFound),
                Some(current) => Err(UpdateError::Stale { current }),
            },
        }
    }

    async fn current_version(&self, id: i64) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(self.live()?)
            .await
    }

    /// Soft-deletes a product; `None` when there was no live product.
    #[tracing::instrument(name = "DELETE products", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn delete(&self, id: i64) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE products SET deleted_at = now(), version = version + 1, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL RETURNING version",
        )
        .bind(id)
        .fetch_optional(self.live()?)
        .await
    }
}
