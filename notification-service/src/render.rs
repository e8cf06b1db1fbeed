//! The message of each event type.

use shared::kafka::events::{Event, EventPayload};

/// (subject, body) of the notification for `event`.
pub fn render(event: &Event) -> (String, String) {
    let order = event.order_id;
    match &event.payload {
        EventPayload::OrderCreated {
            items,
            total_price,
            currency,
            ..
        } => (
            format!("Order #{order} placed"),
            format!(
                "We received your order #{order}: {} item(s), {total_price} {currency}. We'll let you know when the payment goes through.",
                items.iter().map(|i| i.quantity as i64).sum::<i64>()
            ),
        ),
        EventPayload::PaymentSuccess {
            amount,
            transaction_id,
            ..
        } => (
            format!("Payment received for order #{order}"),
            format!("We received your payment of {amount} (transaction {transaction_id})."),
        ),
        EventPayload::PaymentFailed { amount, reason, .. } => (
            format!("Payment failed for order #{order}"),
            format!(
                "Your payment of {amount} did not go through: {}. The order has been cancelled and nothing was charged.",
                reason.describe()
            ),
        ),
        EventPayload::OrderConfirmed { total_price } => (
            format!("Order #{order} confirmed"),
            format!("Your order #{order} ({total_price}) is confirmed and on its way to packing."),
        ),
        EventPayload::OrderCancelled { reason } => (
            format!("Order #{order} cancelled"),
            format!("Your order #{order} was cancelled ({}).", reason.describe()),
        ),
        EventPayload::PaymentRefunded { amount, reason, .. } => (
            format!("Refund for order #{order}"),
            format!(
                "We refunded {amount} for order #{order}: {}.",
                reason.describe()
            ),
        ),
    }
}
