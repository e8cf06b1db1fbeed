//! The ids that cross a service boundary (an event, a stock call, a token):
//! positive integers, parsed once where they arrive, so an order id can't
//! be passed where a product id is meant and a zero or negative id never
//! gets past the edge. Inside a service's own database they are read back
//! as they were written (`sqlx` transparent).

use serde::{Deserialize, Deserializer, Serialize};

/// An id that is not a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be a positive integer, not {value}")]
pub struct InvalidId {
    /// What the id names (`order_id`, `product_id`, `user_id`).
    pub what: &'static str,
    pub value: i64,
}

/// Text that is not an id (a path segment, a form field, a cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be a positive integer")]
pub struct ParseIdError {
    pub what: &'static str,
}

/// An id refused at a gRPC edge is the caller's mistake.
impl From<InvalidId> for tonic::Status {
    fn from(e: InvalidId) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// What the id is called in messages and errors.
            pub const FIELD: &'static str = $what;
            /// The smallest id, 1.
            pub const MIN: Self = Self(1);

            /// `value` as an id, if it is positive.
            pub const fn new(value: i64) -> Result<Self, InvalidId> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(InvalidId { what: $what, value })
                }
            }

            /// The number, for a message or a column.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        /// Refuses a zero or negative id, naming the field.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = i64::deserialize(deserializer)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }

        /// A positive integer in the event contract (docs/asyncapi.yaml).
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "integer",
                    "minimum": 1,
                    "format": "int64",
                    "description": concat!("`", $what, "`: a positive integer."),
                })
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseIdError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.parse::<i64>()
                    .ok()
                    .and_then(|value| Self::new(value).ok())
                    .ok_or(ParseIdError { what: $what })
            }
        }

        impl TryFrom<i64> for $name {
            type Error = InvalidId;
            fn try_from(value: i64) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl From<$name> for serde_json::Value {
            fn from(id: $name) -> serde_json::Value {
                id.0.into()
            }
        }

        impl PartialEq<i64> for $name {
            fn eq(&self, other: &i64) -> bool {
                self.0 == *other
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                positive_integer()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// An order, as order-service numbers it.
    OrderId,
    "order_id"
);
id_type!(
    /// A product of the catalogue.
    ProductId,
    "product_id"
);
id_type!(
    /// A user account (a token's subject).
    UserId,
    "user_id"
);

fn positive_integer() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_and_say_which_field_is_wrong() {
        assert_eq!(OrderId::new(7).map(OrderId::get), Ok(7));
        let err = ProductId::new(0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "product_id must be a positive integer, not 0"
        );
        let from_json: Result<UserId, _> = serde_json::from_str("-3");
        assert!(from_json.unwrap_err().to_string().contains("user_id"));
        assert_eq!(
            serde_json::to_string(&OrderId::new(42).unwrap()).unwrap(),
            "42"
        );
        assert!(serde_json::from_str::<OrderId>("\"42\"").is_err());
    }
}
