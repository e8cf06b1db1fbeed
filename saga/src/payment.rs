//! payment-service's half of the saga: `order_created` is charged once and
//! its outcome announced; `order_cancelled` is remembered, and a payment
//! that succeeded is refunded, once.
//!
//! ```text
//! order_created   --(no payment, not cancelled)--> Charge -> Charged: succeeded (+ payment_success) | failed (+ payment_failed)
//!                 --(cancelled first)------------> failed, order_cancelled (+ payment_failed)
//! order_cancelled --> remembered; succeeded -> refunded (+ payment_refunded)
//! ```

use shared::id::UserId;
use shared::kafka::events::{DeclineReason, Event, EventPayload, RefundReason, TransactionId};
use shared::money::{Money, order_total};

shared::text_enum! {
    /// Where a payment stands.
    pub enum PaymentStatus {
        /// Charged: the order is paid.
        Succeeded = "succeeded",
        /// Declined by the gateway, or the order was cancelled first.
        Failed = "failed",
        /// Charged, then given back: the order was cancelled meanwhile.
        Refunded = "refunded",
    }
}

/// What the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Approved { transaction_id: TransactionId },
    Declined { reason: DeclineReason },
}

/// The payment of an order, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Payment {
    pub id: i64,
    pub user_id: UserId,
    pub amount: Money,
    pub status: PaymentStatus,
}

/// What payment-service knows of an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ledger {
    pub payment: Option<Payment>,
    /// An `order_cancelled` came for it.
    pub cancelled: bool,
}

/// What happens to an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// An event from the topic.
    Event(&'a Event),
    /// The gateway answered the charge [`Decision::Charge`] asked for.
    Charged { amount: Money, charge: &'a Charge },
}

/// What payment-service does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (not ours, or its effect happened already).
    Nothing,
    /// The event contradicts itself or the ledger: refused, nothing changes.
    Refuse(String),
    /// Ask the gateway to charge this amount, then decide on [`Input::Charged`].
    Charge(Money),
    /// Record the payment and announce it ([`Record::announce`]).
    Record(Record),
    /// Remember the cancel; refund this payment if there is one.
    Cancel { refund: Option<Payment> },
}

/// A payment to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub amount: Money,
    pub charge: Charge,
}

impl Record {
    /// Its status and what the payments table says of it.
    pub fn status(&self) -> PaymentStatus {
        match self.charge {
            Charge::Approved { .. } => PaymentStatus::Succeeded,
            Charge::Declined { .. } => PaymentStatus::Failed,
        }
    }

    /// The event that announces it, once recorded as payment `payment_id`.
    pub fn announce(&self, payment_id: i64) -> EventPayload {
        match &self.charge {
            Charge::Approved { transaction_id } => EventPayload::PaymentSuccess {
                payment_id,
                amount: self.amount,
                transaction_id: transaction_id.clone(),
            },
            Charge::Declined { reason } => EventPayload::PaymentFailed {
                payment_id,
                amount: self.amount,
                reason: *reason,
            },
        }
    }
}

/// The refund of `payment`, announced.
pub fn refund(payment: &Payment) -> EventPayload {
    EventPayload::PaymentRefunded {
        payment_id: payment.id,
        amount: payment.amount,
        reason: RefundReason::OrderCancelled,
    }
}

/// What payment-service does with the order it knows as `ledger` when
/// `input` happens (module doc).
pub fn decide(ledger: &Ledger, input: Input<'_>) -> Decision {
    match input {
        Input::Charged { amount, charge } => Decision::Record(Record {
            amount,
            charge: charge.clone(),
        }),
        Input::Event(event) => match &event.payload {
            EventPayload::OrderCreated {
                items, total_price, ..
            } => {
                // A total within the range of every total, and its lines':
                // anything else is refused before anything is charged.
                let amount = match order_total(items.iter().map(|i| (i.unit_price, i.quantity))) {
                    Ok(lines) if lines == *total_price => lines,
                    Ok(lines) => {
                        return Decision::Refuse(format!(
                            "order_created's total {total_price} is not its lines' ({lines})"
                        ));
                    }
                    Err(e) => return Decision::Refuse(format!("order_created's lines: {e}")),
                };
                if ledger.payment.is_some() {
                    // A second order_created for one order (a new event id): one payment only.
                    Decision::Nothing
                } else if ledger.cancelled {
                    Decision::Record(Record {
                        amount,
                        charge: Charge::Declined {
                            reason: DeclineReason::OrderCancelled,
                        },
                    })
                } else {
                    Decision::Charge(amount)
                }
            }
            // Only a payment this service made can be refunded, so only an
            // order it saw created; a cancel that names another owner than
            // the payment's is refused (forged, or from a broken producer).
            EventPayload::OrderCancelled { .. } => match &ledger.payment {
                Some(payment) if payment.user_id != event.user_id => Decision::Refuse(format!(
                    "order_cancelled names user {} but order {}'s payment is user {}'s",
                    event.user_id, event.order_id, payment.user_id
                )),
                payment => Decision::Cancel {
                    refund: payment
                        .clone()
                        .filter(|p| p.status == PaymentStatus::Succeeded),
                },
            },
            // This service's own announcements, and order-service's
            // confirmation, which asks nothing of it.
            EventPayload::OrderConfirmed { .. }
            | EventPayload::PaymentSuccess { .. }
            | EventPayload::PaymentFailed { .. }
            | EventPayload::PaymentRefunded { .. } => Decision::Nothing,
        },
    }
}
