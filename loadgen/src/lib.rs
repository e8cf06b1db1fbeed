//! `loadgen`: minishop's load, chaos and invariant harness.
//!
//! - the `loadgen` binary ([`api`], [`mix`], [`seed`], [`stats`]): drives the
//!   real REST API like users and reports throughput, latency and saga
//!   completion;
//! - the `invariants` binary ([`invariants`]): checks the invariants (docs/saga.md) across the
//!   five databases and the dead-letter topic after a run has settled
//!   (scripts/chaos.sh runs both).

pub mod api;
pub mod invariants;
pub mod mix;
pub mod seed;
pub mod stats;
