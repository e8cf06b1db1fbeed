//! `shared`: what every minishop service needs, written once.
//!
//! - [`app`]: the composition root: start-up, serving and drain of a service.
//! - [`config`]: typed, validated environment configuration.
//! - [`telemetry`]: JSON logs through `tracing`.
//! - [`error`]: the API error type and the extractors that produce it.
//! - [`auth`]: JWT verification (public key only) as axum extractors, and signing.
//! - [`authority`]: a token's current role, asked of user-service.
//! - [`http`]: versioned mounting, health/readiness/metrics/docs, serving, pagination.
//! - [`kafka`]: events, transactional outbox + relay, inbox, consumer with DLQ.
//! - [`metrics`]: a Prometheus registry per service and RED metrics per route.
//! - [`db`]: the PostgreSQL pool and migrations.
//! - [`ratelimit`]: per-IP and per-user rate limits (429 + `Retry-After`).
//! - [`money`]: exact amounts in cents, two decimals in JSON.
//! - [`id`]: the ids that cross a boundary (order, product, user), positive.
//! - [`shutdown`]: graceful shutdown on SIGTERM/SIGINT.
//! - [`stock`]: the order lines and shortfalls the stock calls carry.
//! - [`proto`]: the generated gRPC code of `proto/`.
//! - [`probe`]: the `healthcheck` argument every binary takes (container health probe).

pub mod alloc;
pub mod app;
pub mod auth;
pub mod authority;
pub mod config;
pub mod conn;
pub mod db;
pub mod error;
pub mod http;
pub mod id;
pub mod kafka;
pub mod metrics;
pub mod money;
pub mod probe;
pub mod proto;
pub mod ratelimit;
pub mod shutdown;
pub mod stock;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

// What `text_enum!` expands to names these, so a crate using it needs no
// dependency of its own on them.
#[doc(hidden)]
pub use schemars as __schemars;
#[doc(hidden)]
pub use serde as __serde;
#[doc(hidden)]
pub use sqlx as __sqlx;
#[doc(hidden)]
pub use utoipa as __utoipa;

/// Every binary that links `shared` allocates with [`alloc::Allocator`].
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

/// An enum stored and shown as text (a status, a state): declares it
/// (`Debug, Clone, Copy, PartialEq, Eq, Hash`, with its doc comment), and
/// gives it `as_str`, `parse`, `NAMES` (every text, in order,
/// for error messages), `Display`, its JSON form (serde: the text; an
/// unknown one is an error that lists the known), its OpenAPI schema (a
/// string enum, described by the enum's doc comment) and its PostgreSQL text
/// encoding (bind it, read it with `try_get`; an unknown text is a decode
/// error). The texts are written once, beside their variants, so the API,
/// the database and the events can't spell a value differently.
///
/// ```
/// shared::text_enum! {
///     pub enum Light { Red = "red", Green = "green" }
/// }
/// assert_eq!(Light::parse("green"), Some(Light::Green));
/// assert_eq!(Light::Red.as_str(), "red");
/// assert_eq!(Light::NAMES, ["red", "green"]);
/// assert_eq!(Light::parse("blue"), None);
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[doc = $doc:literal])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every value's text, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The text the value is stored and shown as.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value `text` names, if any.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    <D::Error as $crate::__serde::de::Error>::unknown_variant(&text, Self::NAMES)
                })
            }
        }

        impl $crate::__utoipa::PartialSchema for $name {
            fn schema() -> $crate::__utoipa::openapi::RefOr<$crate::__utoipa::openapi::schema::Schema> {
                use $crate::__utoipa::openapi::schema::{ObjectBuilder, Type};
                let doc: &[&str] = &[$($doc),*];
                let doc = doc.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ");
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .description((!doc.is_empty()).then_some(doc))
                    .into()
            }
        }

        impl $crate::__utoipa::ToSchema for $name {}

        /// Its texts, in the event contract (docs/asyncapi.yaml).
        impl $crate::__schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut $crate::__schemars::SchemaGenerator) -> $crate::__schemars::Schema {
                let doc: &[&str] = &[$($doc),*];
                let doc = doc.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ");
                $crate::__schemars::json_schema!({
                    "type": "string",
                    "enum": Self::NAMES,
                    "description": doc,
                })
            }
        }

        impl $crate::__sqlx::Type<$crate::__sqlx::Postgres> for $name {
            fn type_info() -> $crate::__sqlx::postgres::PgTypeInfo {
                <&str as $crate::__sqlx::Type<$crate::__sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &$crate::__sqlx::postgres::PgTypeInfo) -> bool {
                <&str as $crate::__sqlx::Type<$crate::__sqlx::Postgres>>::compatible(ty)
            }
        }

        /// Read from a text column; a text no variant has is a decode error.
        impl<'r> $crate::__sqlx::Decode<'r, $crate::__sqlx::Postgres> for $name {
            fn decode(
                value: $crate::__sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, $crate::__sqlx::error::BoxDynError> {
                let text = <&str as $crate::__sqlx::Decode<$crate::__sqlx::Postgres>>::decode(value)?;
                Self::parse(text).ok_or_else(|| {
                    format!("unexpected {} {text:?}", stringify!($name)).into()
                })
            }
        }

        impl $crate::__sqlx::Encode<'_, $crate::__sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut $crate::__sqlx::postgres::PgArgumentBuffer,
            ) -> Result<$crate::__sqlx::encode::IsNull, $crate::__sqlx::error::BoxDynError> {
                <&str as $crate::__sqlx::Encode<$crate::__sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    text_enum! {
        enum Light {
            Red = "red",
            Green = "green",
        }
    }

    #[test]
    fn a_text_enum_round_trips_through_its_texts_and_refuses_others() {
        for name in Light::NAMES {
            let light = Light::parse(name).expect("every listed text parses");
            assert_eq!(light.as_str(), *name);
            assert_eq!(light.to_string(), *name);
        }
        assert_eq!(Light::NAMES, ["red", "green"]);
        assert_eq!(Light::parse("Red"), None);
        assert_eq!(Light::parse(""), None);
    }

    #[test]
    fn a_text_enum_is_its_text_in_json_and_names_the_known_ones_when_refused() {
        assert_eq!(serde_json::to_value(Light::Green).unwrap(), "green");
        let light: Light = serde_json::from_str(r#""red""#).unwrap();
        assert_eq!(light, Light::Red);
        let refused = serde_json::from_str::<Light>(r#""blue""#).unwrap_err();
        let says = refused.to_string();
        let named = ["`blue`", "`red`", "`green`"];
        assert!(named.iter().all(|t| says.contains(t)), "{says}");
    }

    text_enum! {
        /// A traffic light's
        /// colour.
        enum Documented {
            Amber = "amber",
        }
    }

    #[test]
    fn a_text_enum_schema_lists_its_texts_with_its_doc() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(Documented::schema()).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["enum"], serde_json::json!(["amber"]));
        assert_eq!(schema["description"], "A traffic light's colour.");
    }
}
