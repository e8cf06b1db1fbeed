//! notification-service: tells users what happened to their orders.
//!
//! Consumes every event (group `notification-service`), renders a message
//! per type (`render`), stores it once per event id in the same transaction
//! as the inbox claim (`recorder::Recorder`), and delivers (`delivery`) it through a
//! [`notifier::Notifier`] (the log by default). Delivery is a PostgreSQL
//! queue worked with `FOR UPDATE SKIP LOCKED`: sends run concurrently with a
//! timeout, failures are retried with exponential backoff and jitter without
//! holding up other messages, and a message is `failed` after N tries.
//! REST: `GET /notifications?user_id=` for that user or an admin.

pub mod api;
pub mod app;
pub mod config;
pub mod delivery;
pub mod notifier;
pub mod recorder;
pub mod render;
pub mod store;

pub use config::Config;
