//! product-service: the catalogue and its stock.
//!
//! REST (`api`) for browsing and admin edits, with a Redis read-through
//! cache (`cache`) that never serves a value older than the last write and
//! steps aside when Redis is down; gRPC (`grpc`) for the order saga's
//! all-or-nothing, idempotent stock reservations (`stock`), which can't
//! oversell because stock moves only through conditional UPDATEs.

pub mod api;
pub mod app;
pub mod cache;
pub mod catalogue;
pub mod config;
pub mod grpc;
pub mod model;
pub mod stock;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Config;
