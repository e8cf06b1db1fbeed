//! An order's timeline (docs/saga.md, "The timeline"): every step of its
//! saga with its time, its cause and its trace, as `GET
//! /orders/{id}/timeline` and gRPC `GetOrderTimeline` show it.
//!
//! A step is written by the statement or transaction that takes it
//! ([`crate::store`]), the inbox claim of a causing event included, so a
//! redelivered event adds no step and the timeline never disagrees with
//! the order. `event_published` is written by a trigger on the outbox, in
//! the relay's transaction that marks the event sent
//! (migrations/0004_order_steps.sql).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::id::OrderId;
use shared::kafka::events::Event;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::OrderStatus;

/// A step of an order's saga (the saga decides which it takes).
pub use saga::order::StepKind;

shared::text_enum! {
    /// What took a step.
    pub enum CauseKind {
        /// The customer's request that placed the order.
        Request = "request",
        /// The customer's (or an admin's) cancel request.
        CustomerCancel = "customer_cancel",
        /// An event from the topic (`event_id`, `event_type`).
        Event = "event",
        /// The recovery loop, finishing a saga a request or an event left unfinished.
        Recovery = "recovery",
        /// The payment timeout: no payment result came in time.
        PaymentTimeout = "payment_timeout",
        /// The outbox relay.
        Relay = "relay",
    }
}

/// What takes a step, as the code that takes it knows it.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    Request,
    CustomerCancel,
    Recovery,
    PaymentTimeout,
    Event(&'a Event),
}

impl Cause<'static> {
    /// The cause of the steps a reservation's caller takes.
    pub fn of(caller: saga::order::Caller) -> Self {
        match caller {
            saga::order::Caller::Request => Cause::Request,
            saga::order::Caller::Recovery => Cause::Recovery,
        }
    }
}

impl Cause<'_> {
    fn kind(self) -> CauseKind {
        match self {
            Cause::Request => CauseKind::Request,
            Cause::CustomerCancel => CauseKind::CustomerCancel,
            Cause::Recovery => CauseKind::Recovery,
            Cause::PaymentTimeout => CauseKind::PaymentTimeout,
            Cause::Event(_) => CauseKind::Event,
        }
    }
}

/// A step about to be written: its kind, its cause and what it says,
/// with the trace it is taken in.
#[derive(Debug, Clone)]
pub struct NewStep {
    kind: StepKind,
    cause: CauseKind,
    event_id: Option<Uuid>,
    event_type: Option<&'static str>,
    trace_id: Option<String>,
    detail: Option<String>,
}

impl NewStep {
    /// `kind`, taken now by `cause` in the current span's trace.
    pub fn new(kind: StepKind, cause: Cause<'_>) -> Self {
        let event = match cause {
            Cause::Event(event) => Some(event),
            _ => None,
        };
        Self {
            kind,
            cause: cause.kind(),
            event_id: event.map(|e| e.event_id),
            event_type: event.map(|e| e.payload.event_type()),
            trace_id: shared::telemetry::current_trace_id(),
            detail: None,
        }
    }

    /// A step the saga decided on, taken now by `cause`.
    pub fn decided(step: saga::order::Step, cause: Cause<'_>) -> Self {
        Self {
            detail: step.detail,
            ..Self::new(step.kind, cause)
        }
    }

    /// SQL that writes `steps` (a slice of them, bound by [`Self::bind`])
    /// for each order `id` that `source` (a CTE of the same statement)
    /// returns, taking their values from parameters `$first` to
    /// `$first + 5`, one array each. Steps written this way are part of
    /// the statement that takes them, and are written only if that
    /// statement moved the order.
    pub fn insert_from(source: &str, first: usize) -> String {
        let p: Vec<String> = (first..first + 6).map(|p| format!("${p}")).collect();
        format!(
            "{INSERT} SELECT s.id, u.step, u.cause, u.event_id, u.event_type, u.trace_id, u.detail \
             FROM {source} s CROSS JOIN UNNEST({}::text[], {}::text[], {}::uuid[], {}::text[], {}::text[], {}::text[]) \
             WITH ORDINALITY AS u(step, cause, event_id, event_type, trace_id, detail, n) ORDER BY u.n",
            p[0], p[1], p[2], p[3], p[4], p[5]
        )
    }

    /// Binds the values of `steps`, the parameters of [`Self::insert_from`].
    pub fn bind<'q>(
        steps: &'q [NewStep],
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(steps.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.cause.as_str()).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.event_id).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.event_type).collect::<Vec<_>>())
            .bind(
                steps
                    .iter()
                    .map(|s| s.trace_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                steps
                    .iter()
                    .map(|s| s.detail.as_deref())
                    .collect::<Vec<_>>(),
            )
    }

    /// The steps a decision took, taken now by `cause`.
    pub fn all_decided(steps: &[saga::order::Step], cause: Cause<'_>) -> Vec<Self> {
        steps
            .iter()
            .map(|s| Self::decided(s.clone(), cause))
            .collect()
    }
}

/// The start of every step's insert; a step's six values follow `order_id`.
const INSERT: &str =
    "INSERT INTO order_steps (order_id, step, cause, event_id, event_type, trace_id, detail)";

/// Writes `steps` of order `id` in `tx`, in one statement.
pub async fn record(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    id: OrderId,
    steps: &[NewStep],
) -> Result<(), sqlx::Error> {
    if steps.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "WITH target AS (SELECT $1::bigint AS id) {}",
        NewStep::insert_from("target", 2)
    );
    NewStep::bind(steps, sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A step as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Step {
    /// Its place in the timeline (increasing, not consecutive).
    pub seq: i64,
    pub step: StepKind,
    /// When it was taken.
    pub at: DateTime<Utc>,
    pub cause: CauseKind,
    /// The causing event, or for `event_published` the event published.
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    /// The trace it was taken in (32 hex digits; Jaeger finds it by this).
    pub trace_id: Option<String>,
    /// A reason, a shortfall or an amount.
    pub detail: Option<String>,
}

/// An order's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    pub order_id: OrderId,
    /// The order's status now.
    pub status: OrderStatus,
    /// Its steps, first to last.
    pub steps: Vec<Step>,
}

/// The most steps one timeline returns. An order takes about ten; more
/// can only be repeated payment results of distinct events, each recorded.
pub const MAX_STEPS: i64 = 1000;
