//! An order's saga in words: each timeline step's label, the service it
//! happened in (its lane in the console's swimlane), and what the order's
//! status means to the customer. Pure; the pages draw it.

use order_service::model::OrderStatus;
use order_service::timeline::{CauseKind, Step, StepKind};

/// The services a step can happen in, left to right in the swimlane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Order,
    Product,
    Payment,
    Notification,
}

impl Lane {
    pub const ALL: [Lane; 4] = [
        Lane::Order,
        Lane::Product,
        Lane::Payment,
        Lane::Notification,
    ];

    pub fn service(self) -> &'static str {
        match self {
            Lane::Order => "order-service",
            Lane::Product => "product-service",
            Lane::Payment => "payment-service",
            Lane::Notification => "notification-service",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Lane::Order => 0,
            Lane::Product => 1,
            Lane::Payment => 2,
            Lane::Notification => 3,
        }
    }
}

/// Where a step happened: stock in product-service, a refund in
/// payment-service, the rest in order-service, which records them all.
pub fn lane(step: StepKind) -> Lane {
    match step {
        StepKind::StockReserved
        | StepKind::StockRefused
        | StepKind::StockCommitted
        | StepKind::StockReleased => Lane::Product,
        StepKind::Refunded => Lane::Payment,
        StepKind::Placed
        | StepKind::Rejected
        | StepKind::EventPublished
        | StepKind::PaymentReceived
        | StepKind::Paid
        | StepKind::Failed
        | StepKind::Cancelled => Lane::Order,
    }
}

/// The step in words.
pub fn label(step: &Step) -> String {
    let event = step.event_type.as_deref().unwrap_or("an event");
    match step.step {
        StepKind::Placed => "Order placed".into(),
        StepKind::StockReserved => "Stock reserved".into(),
        StepKind::StockRefused => "Not enough stock".into(),
        StepKind::Rejected => "Order rejected".into(),
        StepKind::EventPublished => format!("Published {event}"),
        StepKind::PaymentReceived => format!("Received {event}"),
        StepKind::Paid => "Paid".into(),
        StepKind::Failed => "Payment declined".into(),
        StepKind::Cancelled => "Cancelled".into(),
        StepKind::StockCommitted => "Stock sold".into(),
        StepKind::StockReleased => "Stock given back (compensation)".into(),
        StepKind::Refunded => "Payment refunded".into(),
    }
}

/// What took the step, in words.
pub fn cause(cause: CauseKind) -> &'static str {
    match cause {
        CauseKind::Request => "your request",
        CauseKind::CustomerCancel => "a cancel request",
        CauseKind::Event => "an event",
        CauseKind::Recovery => "the recovery loop",
        CauseKind::PaymentTimeout => "the payment timeout",
        CauseKind::Relay => "the outbox relay",
    }
}

/// The order's status as a heading, and whether its stock was given back
/// (the saga's compensation) according to its steps.
pub fn status_text(status: OrderStatus, steps: &[Step]) -> String {
    let released = steps.iter().any(|s| s.step == StepKind::StockReleased);
    let refunded = steps.iter().any(|s| s.step == StepKind::Refunded);
    match status {
        OrderStatus::Pending => "Pending: waiting for payment".into(),
        OrderStatus::Paid => "Paid".into(),
        OrderStatus::Failed if released => "Payment failed: stock given back (compensated)".into(),
        OrderStatus::Failed => "Payment failed: giving the stock back".into(),
        OrderStatus::Cancelled if refunded => "Cancelled and refunded".into(),
        OrderStatus::Cancelled if released => "Cancelled: stock given back".into(),
        OrderStatus::Cancelled => "Cancelled".into(),
        OrderStatus::Rejected => "Rejected".into(),
    }
}

/// Whether the saga has nothing left to do for this order: a final
/// status, and its stock settled (sold, given back, or never held).
pub fn settled(status: OrderStatus, steps: &[Step]) -> bool {
    let has = |kind| steps.iter().any(|s| s.step == kind);
    match status {
        OrderStatus::Pending => false,
        OrderStatus::Paid => has(StepKind::StockCommitted),
        OrderStatus::Failed | OrderStatus::Cancelled => {
            has(StepKind::StockReleased) || !has(StepKind::StockReserved)
        }
        OrderStatus::Rejected => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: StepKind) -> Step {
        Step {
            seq: 1,
            step: kind,
            at: chrono::Utc::now(),
            cause: CauseKind::Event,
            event_id: None,
            event_type: Some("payment_failed".into()),
            trace_id: None,
            detail: None,
        }
    }

    #[test]
    fn a_failed_order_is_compensated_once_its_stock_is_back() {
        let steps = vec![
            step(StepKind::Placed),
            step(StepKind::StockReserved),
            step(StepKind::Failed),
        ];
        assert!(!settled(OrderStatus::Failed, &steps));
        assert_eq!(
            status_text(OrderStatus::Failed, &steps),
            "Payment failed: giving the stock back"
        );
        let mut steps = steps;
        steps.push(step(StepKind::StockReleased));
        assert!(settled(OrderStatus::Failed, &steps));
        assert!(status_text(OrderStatus::Failed, &steps).contains("compensated"));
    }

    #[test]
    fn a_paid_order_is_settled_once_its_stock_is_sold() {
        let mut steps = vec![step(StepKind::StockReserved), step(StepKind::Paid)];
        assert!(!settled(OrderStatus::Paid, &steps));
        steps.push(step(StepKind::StockCommitted));
        assert!(settled(OrderStatus::Paid, &steps));
        assert!(!settled(OrderStatus::Pending, &steps));
    }

    #[test]
    fn stock_steps_are_product_service_s() {
        assert_eq!(lane(StepKind::StockReleased), Lane::Product);
        assert_eq!(lane(StepKind::Refunded), Lane::Payment);
        assert_eq!(lane(StepKind::Paid), Lane::Order);
        assert_eq!(
            label(&step(StepKind::PaymentReceived)),
            "Received payment_failed"
        );
    }
}
