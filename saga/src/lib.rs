//! The order saga's decisions (docs/saga.md), as pure functions: given what
//! a service knows of an order and what just happened, [`order::decide`]
//! and [`payment::decide`] say what changes, which steps the timeline
//! records, which event is published and which call comes next. They read
//! no clock, no database and no network, so every path is a unit test
//! ("given this order, when this arrives, then this happens") and the
//! whole saga can be explored by a model checker (`tests/model.rs`).
//!
//! The services are the shell around them: order-service and
//! payment-service read the state in a transaction, call `decide`, and
//! write its decision in that same transaction, guarded by the state it
//! was decided on, so a decision taken twice or too late changes nothing.

pub mod order;
pub mod payment;
