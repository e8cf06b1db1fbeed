//! The product as the API shows it, and the validation of what clients send.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::error::{ApiError, ErrorCode};
use shared::money::{MAX_PRICE, Money};
use utoipa::ToSchema;

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A product of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Product {
    pub id: i64,
    pub name: String,
    #[sqlx(rename = "price_cents")]
    pub price: Money,
    pub stock: i32,
    /// Increases with every change; send it back (or the ETag in `If-Match`) to update safely.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /products`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// 1 to 200 characters, not blank.
    pub name: String,
    /// More than 0, at most two decimals.
    pub price: Money,
    /// 0 or more.
    pub stock: i32,
}

/// `PUT /products/{id}`: every field is optional; a field left out stays as it was.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<Money>,
    pub stock: Option<i32>,
    /// The version the client last saw; a stale one is a 409.
    pub version: Option<i64>,
}

pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err(ApiError::invalid_field("name", "name must not be blank"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "name",
            format!("name must be at most {MAX_NAME_CHARS} characters (got {chars})"),
        ));
    }
    if name.chars().any(|c| c == '\0') {
        return Err(ApiError::invalid_field(
            "name",
            "name must not contain NUL characters",
        ));
    }
    Ok(())
}

pub fn validate_price(price: Money) -> Result<(), ApiError> {
    if price.cents() <= 0 {
        return Err(ApiError::invalid_field(
            "price",
            "price must be greater than 0",
        ));
    }
    if price > MAX_PRICE {
        return Err(ApiError::invalid_field(
            "price",
            format!("price must be at most {MAX_PRICE}"),
        ));
    }
    Ok(())
}

pub fn validate_stock(stock: i32) -> Result<(), ApiError> {
    if stock < 0 {
        return Err(ApiError::invalid_field("stock", "stock must be 0 or more"));
    }
    Ok(())
}

impl NewProduct {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_name(&self.name)?;
        validate_price(self.price)?;
        validate_stock(self.stock)
    }
}

impl ProductPatch {
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.name.is_none() && self.price.is_none() && self.stock.is_none() {
            return Err(ApiError::bad_request(
                ErrorCode::EmptyUpdate,
                "nothing to update: send at least one of name, price, stock",
            ));
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if let Some(price) = self.price {
            validate_price(price)?;
        }
        if let Some(stock) = self.stock {
            validate_stock(stock)?;
        }
        if let Some(v) = self.version
            && v < 1
        {
            return Err(ApiError::invalid_field(
                "version",
                "version must be 1 or more",
            ));
        }
        Ok(())
    }
}

/// The strong ETag of a product version.
pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// The version named by an `If-Match` value; `*` means "any version".
pub fn parse_if_match(value: &str) -> Result<Option<i64>, ApiError> {
    let value = value.trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .trim_matches('"')
        .trim_start_matches('v')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            ApiError::invalid_field(
                "If-Match",
                "If-Match must be an ETag of this API, like \"v3\"",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_count_characters_not_bytes() {
        assert!(validate_name(&"é".repeat(200)).is_ok());
        assert!(validate_name(&"é".repeat(201)).is_err());
        assert!(validate_name("   ").is_err());
    }

    #[test]
    fn if_match_accepts_our_etags() {
        assert_eq!(parse_if_match(&etag(7)).unwrap(), Some(7));
        assert_eq!(parse_if_match("W/\"v7\"").unwrap(), Some(7));
        assert_eq!(parse_if_match("*").unwrap(), None);
        assert!(parse_if_match("\"abc\"").is_err());
    }
}
