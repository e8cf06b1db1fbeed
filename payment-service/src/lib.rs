//! payment-service: pays for orders.
//!
//! Consumes `order_created` (group `payment-service`), charges through a
//! [`gateway::PaymentGateway`] (simulated: deterministic per order id, so a
//! redelivery never flips an outcome), records one payment per order, and
//! publishes `payment_success` / `payment_failed` through the outbox, all in
//! one transaction with the inbox claim. A success whose order was
//! cancelled meanwhile is refunded (`payment_refunded`). REST: `GET
//! /payments` and `GET /payments/{id}` for the owner or an admin.

pub mod api;
pub mod app;
pub mod config;
pub mod gateway;
pub mod saga;
pub mod store;

pub use config::Config;
