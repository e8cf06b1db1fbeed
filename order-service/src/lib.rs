//! order-service: orders and the saga that orchestrates stock and payment.
//!
//! `POST /orders` (and gRPC `CreateOrder`) inserts a pending order, holds
//! its stock over gRPC at product-service ([`product_client`]: deadline,
//! retries, circuit breaker) and publishes `order_created` through the
//! outbox; payment results from Kafka make it `paid` (stock committed) or
//! `failed` (stock released). A recovery loop finishes sagas a crash
//! interrupted and cancels orders whose payment never came. See [`saga`].

pub mod api;
pub mod app;
pub mod config;
pub mod grpc;
pub mod model;
pub mod product_client;
pub mod saga;
pub mod store;
pub mod timeline;

pub use config::Config;
