//! order-service's half of the saga: what an order does when product-service
//! answers, when a payment result arrives, when it is cancelled or times
//! out, when its stock is settled and when the recovery loop finds it.
//!
//! ```text
//! pending/unknown --Reserved--> pending/held  (+ order_created) --payment_success--> paid      (+ order_confirmed) -> Commit
//!        |                              |                       --payment_failed---> failed    (+ order_cancelled) -> Release
//!        |                              +--cancel / timeout---------------------------> cancelled (+ order_cancelled) -> Release
//!        +--Insufficient, NotFound, ... --> rejected (stock none, or unknown: the recovery loop releases it)
//! ```
//!
//! [`decide`] reads the order as it was read (maybe a moment ago); each
//! [`Change`] names the state it may be applied to ([`Change::applies_to`]),
//! which the shell's SQL checks in the `WHERE` of the write, so a decision
//! overtaken by another (a cancel racing a reservation, two replicas, a
//! redelivered event) changes nothing.

use shared::id::{OrderId, ProductId, UserId};
use shared::kafka::events::{Event, EventItem, EventPayload, OrderReason};
use shared::money::{Currency, Money, order_total};
use shared::stock::{OrderLine, Settlement, Shortfall};

shared::text_enum! {
    /// What the customer sees of an order's progress.
    pub enum OrderStatus {
        /// Placed; waiting for payment.
        Pending = "pending",
        /// Paid; its units are sold.
        Paid = "paid",
        /// The payment was declined; stock given back.
        Failed = "failed",
        /// Cancelled by the customer or for lack of a payment in time; stock given back.
        Cancelled = "cancelled",
        /// Refused at once (not enough stock, unknown product, stock service down).
        Rejected = "rejected",
    }
}

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        self != Self::Pending
    }
}

shared::text_enum! {
    /// Where an order's units are at product-service.
    pub enum StockState {
        /// ReserveStock was asked but not answered: units may be held.
        Unknown = "unknown",
        Held = "held",
        Committed = "committed",
        Released = "released",
        /// Nothing was ever held.
        None = "none",
    }
}

shared::text_enum! {
    /// A step of an order's saga.
    pub enum StepKind {
        /// The order was written, pending.
        Placed = "placed",
        /// product-service holds its units at the prices in `detail`.
        StockReserved = "stock_reserved",
        /// product-service refused the reservation (`detail`: why); the order is rejected.
        StockRefused = "stock_refused",
        /// Rejected without an answer from product-service (`detail`: why).
        Rejected = "rejected",
        /// The relay published the event `event_type`/`event_id` (the broker acknowledged it).
        EventPublished = "event_published",
        /// A payment result (`event_type`) arrived; `detail` says if it was ignored.
        PaymentReceived = "payment_received",
        /// The order is paid.
        Paid = "paid",
        /// The payment was declined (`detail`: the gateway's reason).
        Failed = "failed",
        /// The order was cancelled (`detail`: why).
        Cancelled = "cancelled",
        /// product-service sold the held units.
        StockCommitted = "stock_committed",
        /// product-service gave the units back.
        StockReleased = "stock_released",
        /// payment-service refunded the payment of a cancelled order (`detail`: amount and why).
        Refunded = "refunded",
    }
}

/// What the saga knows of an order when it decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderState {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub stock: StockState,
    /// The sum of the reserved lines, once stock is held.
    pub total: Option<Money>,
    pub currency: Currency,
    /// Where the customer wants mail; `order_created` carries it.
    pub customer_email: Option<String>,
}

/// Who asked for a reservation: a request (answers its client now) or the
/// recovery loop (may try again later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Request,
    Recovery,
}

/// product-service's answer to ReserveStock for an order, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The units are held (or, for a repeat, already sold) at these prices.
    /// Items without a valid product id are left out (they are no line of
    /// the order, so the lines do not match).
    Held { items: Vec<EventItem> },
    /// Not enough stock: the first short product (if the answer named a
    /// valid one) and its stock then.
    Insufficient {
        product_id: Option<ProductId>,
        available: i32,
    },
    /// product-service had already released this order id: nothing is held.
    Released,
    /// A status this version does not know: units may be held.
    Unknown,
    /// A product of the order does not exist (gRPC NOT_FOUND).
    ProductNotFound(String),
    /// The total would be over the largest order total (gRPC OUT_OF_RANGE).
    TotalTooLarge,
    /// Refused for another reason: units may be held.
    Refused(String),
    /// No answer. `sent` is false when the call never left (breaker open).
    Unavailable { sent: bool },
}

/// What happens to an order, or happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// product-service answered ReserveStock for `lines`, the order's lines.
    /// `overdue`: the order is older than the payment timeout.
    Reserved {
        lines: &'a [OrderLine],
        answer: Reservation,
        by: Caller,
        overdue: bool,
    },
    /// Recording the held stock failed, and would fail again (`error`).
    HoldFailed { error: String },
    /// An event from the topic.
    Event(&'a Event),
    /// The customer's cancel (`UserCancelled`) or the payment timeout (`Timeout`).
    Cancel(OrderReason),
    /// product-service settled the order's units as asked.
    Settled(Settlement),
    /// The recovery loop found the order unfinished.
    Recover,
}

/// What an order becomes. Each names the states it applies to
/// ([`Change::applies_to`]); the shell writes it only to such an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing changes.
    None,
    /// pending/unknown -> pending/held, at these prices and total.
    Hold { items: Vec<EventItem>, total: Money },
    /// pending/unknown -> rejected. `stock` says whether units may still
    /// be held (`Unknown`: they are released later) or surely are not;
    /// `free_key` lets the client retry with the same idempotency key
    /// (for outages, not for answers).
    Reject {
        reason: OrderReason,
        short: Option<Shortfall>,
        stock: StockState,
        free_key: bool,
    },
    /// pending -> `to` (paid, failed or cancelled).
    Finish {
        to: OrderStatus,
        reason: Option<OrderReason>,
    },
    /// The units moved at product-service: stock in `from` -> `to`.
    Stock {
        from: &'static [StockState],
        to: StockState,
    },
}

impl Change {
    /// Whether this change may be written to an order in `state`: the
    /// condition of the shell's guarded write.
    pub fn applies_to(&self, state: &OrderState) -> bool {
        use OrderStatus::Pending;
        match self {
            Change::None => true,
            Change::Hold { .. } | Change::Reject { .. } => {
                state.status == Pending && state.stock == StockState::Unknown
            }
            Change::Finish { .. } => state.status == Pending,
            Change::Stock { from, .. } => from.contains(&state.stock),
        }
    }

    /// `state` after this change (which must apply to it).
    pub fn apply(&self, state: &mut OrderState) {
        match self {
            Change::None => {}
            Change::Hold { total, .. } => {
                state.stock = StockState::Held;
                state.total = Some(*total);
            }
            Change::Reject { stock, .. } => {
                state.status = OrderStatus::Rejected;
                state.stock = *stock;
            }
            Change::Finish { to, .. } => state.status = *to,
            Change::Stock { to, .. } => state.stock = *to,
        }
    }
}

/// A step the decision adds to the order's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub detail: Option<String>,
}

impl Step {
    fn new(kind: StepKind) -> Self {
        Self { kind, detail: None }
    }

    fn with(kind: StepKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: Some(detail.into()),
        }
    }
}

/// The call to make once the decision is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Ask product-service to hold the order's units.
    Reserve,
    /// Ask product-service to sell or give back the held units.
    Settle(Settlement),
}

/// What the caller learns: for a request, its answer; for an event, whether
/// it is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or nothing to do.
    Done,
    /// The order was rejected, for this reason the client is told.
    Rejected(Refusal),
    /// Nothing changed; try again later (product-service is unavailable).
    Later,
    /// The input contradicts the order: nothing changes, and an event is
    /// refused rather than handled (its inbox claim is rolled back).
    Contradicted(String),
}

/// Why an order was not placed, as its client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Insufficient { product_id: ProductId, stock: i32 },
    ProductNotFound(String),
    TotalTooLarge,
    Unavailable,
    Refused(String),
}

/// Everything [`decide`] says: the change and, in the same transaction,
/// its steps and its event; then the call to make, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub change: Change,
    pub steps: Vec<Step>,
    pub publish: Option<EventPayload>,
    /// Made only if the change was written.
    pub then: Option<Call>,
    pub outcome: Outcome,
}

impl Decision {
    fn nothing() -> Self {
        Self {
            change: Change::None,
            steps: Vec::new(),
            publish: None,
            then: None,
            outcome: Outcome::Done,
        }
    }

    fn outcome(outcome: Outcome) -> Self {
        Self {
            outcome,
            ..Self::nothing()
        }
    }

    /// Records a step and changes nothing.
    fn note(step: Step) -> Self {
        Self {
            steps: vec![step],
            ..Self::nothing()
        }
    }

    fn then(mut self, call: Option<Call>) -> Self {
        self.then = call;
        self
    }
}

/// What the order does when `input` happens to it (module doc).
pub fn decide(order: &OrderState, input: Input<'_>) -> Decision {
    match input {
        Input::Reserved {
            lines,
            answer,
            by,
            overdue,
        } => reserved(order, lines, answer, by, overdue),
        Input::HoldFailed { error } => reject(
            OrderReason::StepFailed,
            None,
            StockState::Unknown,
            false,
            Refusal::Refused(format!("the order could not be recorded: {error}")),
        )
        .then(Some(Call::Settle(Settlement::Release))),
        Input::Event(event) => on_event(order, event),
        Input::Cancel(reason) => finish(
            order,
            OrderStatus::Cancelled,
            Some(reason),
            Some(reason.to_string()),
            EventPayload::OrderCancelled { reason },
            false,
        ),
        Input::Settled(how) => {
            let (from, to, kind): (&'static [StockState], _, _) = match how {
                Settlement::Commit => (
                    &[StockState::Held],
                    StockState::Committed,
                    StepKind::StockCommitted,
                ),
                Settlement::Release => (
                    &[StockState::Held, StockState::Unknown],
                    StockState::Released,
                    StepKind::StockReleased,
                ),
            };
            Decision {
                change: Change::Stock { from, to },
                steps: vec![Step::new(kind)],
                ..Decision::nothing()
            }
        }
        Input::Recover => match (order.status, order.stock) {
            (OrderStatus::Pending, StockState::Unknown) => {
                Decision::nothing().then(Some(Call::Reserve))
            }
            (status, stock) => {
                Decision::nothing().then(settlement(status, stock).map(Call::Settle))
            }
        },
    }
}

/// How an order in `status` with units in `stock` settles them, if it must:
/// a paid order's held units are sold, a finished unpaid order's held (or
/// maybe held) units go back.
pub fn settlement(status: OrderStatus, stock: StockState) -> Option<Settlement> {
    match (status, stock) {
        (OrderStatus::Paid, StockState::Held) => Some(Settlement::Commit),
        (
            OrderStatus::Failed | OrderStatus::Cancelled | OrderStatus::Rejected,
            StockState::Held | StockState::Unknown,
        ) => Some(Settlement::Release),
        _ => None,
    }
}

/// Whether the saga of an order in `state` is over: finished, and its units
/// sold or given back (or never held).
pub fn is_settled(state: &OrderState) -> bool {
    state.status.is_terminal()
        && matches!(
            state.stock,
            StockState::Committed | StockState::Released | StockState::None
        )
}

fn reserved(
    order: &OrderState,
    lines: &[OrderLine],
    answer: Reservation,
    by: Caller,
    overdue: bool,
) -> Decision {
    if (order.status, order.stock) != (OrderStatus::Pending, StockState::Unknown) {
        // Moved on meanwhile (cancelled, or recorded by another path).
        return Decision::nothing();
    }
    let refused = |why: &str| Refusal::Refused(why.to_string());
    match answer {
        Reservation::Held { items } => {
            let matches = items.len() == lines.len()
                && items
                    .iter()
                    .zip(lines)
                    .all(|(r, l)| r.product_id == l.product_id && r.quantity == l.quantity);
            if !matches {
                // Not this order's reservation: its id was used before (the
                // order database was reset but not the product one). Touch
                // nothing of it.
                return reject(
                    OrderReason::StockRefused,
                    None,
                    StockState::None,
                    true,
                    refused("order id already used at product-service"),
                );
            }
            // product-service refuses a reservation over the largest total,
            // but one that did not (an older version) must not leave its
            // units held.
            let Ok(total) = order_total(items.iter().map(|i| (i.unit_price, i.quantity))) else {
                return reject(
                    OrderReason::TotalTooLarge,
                    None,
                    StockState::Unknown,
                    false,
                    Refusal::TotalTooLarge,
                )
                .then(Some(Call::Settle(Settlement::Release)));
            };
            let prices: Vec<String> = items
                .iter()
                .map(|i| {
                    format!(
                        "{} x product {} at {}",
                        i.quantity, i.product_id, i.unit_price
                    )
                })
                .collect();
            Decision {
                steps: vec![Step::with(
                    StepKind::StockReserved,
                    format!("{}; total {total}", prices.join(", ")),
                )],
                publish: Some(EventPayload::OrderCreated {
                    items: items.clone(),
                    total_price: total,
                    currency: order.currency,
                    customer_email: order.customer_email.clone(),
                }),
                change: Change::Hold { items, total },
                ..Decision::nothing()
            }
        }
        Reservation::Insufficient {
            product_id,
            available,
        } => {
            // An unknown short product: the order's first line stands in for it.
            let product_id = product_id
                .unwrap_or_else(|| lines.first().map_or(ProductId::MIN, |l| l.product_id));
            let short = Shortfall {
                product_id,
                available,
            };
            reject(
                OrderReason::InsufficientStock,
                Some(short),
                StockState::None,
                false,
                Refusal::Insufficient {
                    product_id,
                    stock: available,
                },
            )
        }
        // Nothing is held and nothing will be: the order can't go on, so it
        // ends here rather than staying pending for good.
        Reservation::Released => reject(
            OrderReason::StockRefused,
            None,
            StockState::Released,
            true,
            refused("product-service had already released this order"),
        ),
        // Units may be held: the rejection leaves the stock unknown and the
        // recovery loop releases it.
        Reservation::Unknown => reject(
            OrderReason::StockRefused,
            None,
            StockState::Unknown,
            true,
            refused("product-service gave no reservation status"),
        ),
        // product-service refuses these before it holds anything.
        Reservation::ProductNotFound(message) => reject(
            OrderReason::ProductNotFound,
            None,
            StockState::None,
            false,
            Refusal::ProductNotFound(message),
        ),
        Reservation::TotalTooLarge => reject(
            OrderReason::TotalTooLarge,
            None,
            StockState::None,
            false,
            Refusal::TotalTooLarge,
        ),
        Reservation::Refused(message) => reject(
            OrderReason::StockRefused,
            None,
            StockState::Unknown,
            true,
            Refusal::Refused(message),
        ),
        // A request answers its client now; the recovery loop tries again
        // until the payment timeout has passed.
        Reservation::Unavailable { sent } if by == Caller::Request || overdue => {
            // A request's call that never left held nothing.
            let stock = if by == Caller::Request && !sent {
                StockState::None
            } else {
                StockState::Unknown
            };
            reject(
                OrderReason::StockServiceUnavailable,
                None,
                stock,
                true,
                Refusal::Unavailable,
            )
        }
        Reservation::Unavailable { .. } => Decision::outcome(Outcome::Later),
    }
}

fn reject(
    reason: OrderReason,
    short: Option<Shortfall>,
    stock: StockState,
    free_key: bool,
    refusal: Refusal,
) -> Decision {
    // An answer of product-service's refused the stock; an outage did not.
    let kind = match reason {
        OrderReason::StockServiceUnavailable => StepKind::Rejected,
        _ => StepKind::StockRefused,
    };
    let detail = match short {
        Some(s) => format!(
            "{reason}: product {} has {} in stock",
            s.product_id, s.available
        ),
        None => reason.to_string(),
    };
    Decision {
        change: Change::Reject {
            reason,
            short,
            stock,
            free_key,
        },
        steps: vec![Step::with(kind, detail)],
        outcome: Outcome::Rejected(refusal),
        ..Decision::nothing()
    }
}

/// Moves a pending order to `to` and announces it, then settles its
/// units; a finished order stays as it is (an event's arrival is noted).
fn finish(
    order: &OrderState,
    to: OrderStatus,
    reason: Option<OrderReason>,
    detail: Option<String>,
    announce: EventPayload,
    by_event: bool,
) -> Decision {
    if order.status != OrderStatus::Pending {
        return if by_event {
            Decision::note(Step::with(
                StepKind::PaymentReceived,
                format!("ignored: the order is already {}", order.status),
            ))
        } else {
            Decision::nothing()
        };
    }
    let kind = match to {
        OrderStatus::Paid => StepKind::Paid,
        OrderStatus::Failed => StepKind::Failed,
        _ => StepKind::Cancelled,
    };
    let mut steps = Vec::with_capacity(2);
    if by_event {
        steps.push(Step::new(StepKind::PaymentReceived));
    }
    steps.push(Step { kind, detail });
    Decision {
        change: Change::Finish { to, reason },
        steps,
        publish: Some(announce),
        then: settlement(to, order.stock).map(Call::Settle),
        outcome: Outcome::Done,
    }
}

/// An event from the topic. Every type is named: a new one does not
/// compile until this decides what it means for an order.
fn on_event(order: &OrderState, event: &Event) -> Decision {
    match &event.payload {
        EventPayload::PaymentSuccess { amount, .. } => {
            if let Some(why) = contradiction(order, event.user_id, *amount) {
                return Decision::outcome(Outcome::Contradicted(why));
            }
            finish(
                order,
                OrderStatus::Paid,
                None,
                None,
                EventPayload::OrderConfirmed {
                    total_price: order.total.unwrap_or(Money(0)),
                },
                true,
            )
        }
        EventPayload::PaymentFailed { amount, reason, .. } => {
            if let Some(why) = contradiction(order, event.user_id, *amount) {
                return Decision::outcome(Outcome::Contradicted(why));
            }
            finish(
                order,
                OrderStatus::Failed,
                Some(OrderReason::PaymentFailed),
                Some(format!("declined: {reason}")),
                EventPayload::OrderCancelled {
                    reason: OrderReason::PaymentFailed,
                },
                true,
            )
        }
        EventPayload::PaymentRefunded { amount, reason, .. } => Decision::note(Step::with(
            StepKind::Refunded,
            format!("{amount}: {reason}"),
        )),
        // This service's own announcements: nothing to do on reading them back.
        EventPayload::OrderCreated { .. }
        | EventPayload::OrderConfirmed { .. }
        | EventPayload::OrderCancelled { .. } => Decision::nothing(),
    }
}

/// Why `order` contradicts a payment result for `user_id` of `amount`, if
/// it does (docs/saga.md, "Events are checked against the state"). The
/// owner and the total are fixed once stock is held, so they must match in
/// any status; a pending order must also hold its stock (a payment comes
/// only after `order_created`, which comes only after the hold).
fn contradiction(order: &OrderState, user_id: UserId, amount: Money) -> Option<String> {
    if order.user_id != user_id {
        return Some(format!(
            "the event names user {user_id} but order {} belongs to user {}",
            order.id, order.user_id
        ));
    }
    if order.total != Some(amount) {
        let total = order.total.map_or("none".to_string(), |m| m.to_string());
        return Some(format!(
            "the event's amount {amount} is not order {}'s total ({total})",
            order.id
        ));
    }
    if order.status == OrderStatus::Pending && order.stock != StockState::Held {
        return Some(format!(
            "order {} holds no stock ({}): no payment can be for it",
            order.id, order.stock
        ));
    }
    None
}
