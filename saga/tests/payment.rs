//! payment-service's decisions, given what it knows of an order, when an
//! event arrives, then this: with no database, broker or gateway.

use saga::payment::{Charge, Decision, Input, Ledger, Payment, PaymentStatus, Record, decide};
use shared::id::{OrderId, ProductId, UserId};
use shared::kafka::events::{
    DeclineReason, Event, EventItem, EventPayload, OrderReason, RefundReason, TransactionId,
};
use shared::money::{Currency, Money};

const OWNER: i64 = 7;

fn created(unit_cents: i64, quantity: i32, total: i64) -> Event {
    Event::new(
        OrderId::new(1).unwrap(),
        UserId::new(OWNER).unwrap(),
        EventPayload::OrderCreated {
            items: vec![EventItem {
                product_id: ProductId::new(10).unwrap(),
                quantity,
                unit_price: Money(unit_cents),
            }],
            total_price: Money(total),
            currency: Currency::Usd,
            customer_email: None,
        },
    )
}

fn cancelled(user: i64) -> Event {
    Event::new(
        OrderId::new(1).unwrap(),
        UserId::new(user).unwrap(),
        EventPayload::OrderCancelled {
            reason: OrderReason::UserCancelled,
        },
    )
}

fn paid_ledger(status: PaymentStatus) -> Ledger {
    Ledger {
        payment: Some(Payment {
            id: 5,
            user_id: UserId::new(OWNER).unwrap(),
            amount: Money(3000),
            status,
        }),
        cancelled: false,
    }
}

#[test]
fn a_new_order_is_charged_its_total_and_the_answer_announced() {
    let new = Ledger::default();
    assert_eq!(
        decide(&new, Input::Event(&created(1500, 2, 3000))),
        Decision::Charge(Money(3000))
    );
    let approved = Charge::Approved {
        transaction_id: TransactionId::parse("tx-9").unwrap(),
    };
    let Decision::Record(record) = decide(
        &new,
        Input::Charged {
            amount: Money(3000),
            charge: &approved,
        },
    ) else {
        panic!("a charge's answer is recorded");
    };
    assert_eq!(record.status(), PaymentStatus::Succeeded);
    assert_eq!(
        record.announce(42),
        EventPayload::PaymentSuccess {
            payment_id: 42,
            amount: Money(3000),
            transaction_id: TransactionId::parse("tx-9").unwrap(),
        }
    );
    let declined = Record {
        amount: Money(3000),
        charge: Charge::Declined {
            reason: DeclineReason::OverLimit,
        },
    };
    assert_eq!(declined.status(), PaymentStatus::Failed);
    assert!(matches!(
        declined.announce(42),
        EventPayload::PaymentFailed {
            reason: DeclineReason::OverLimit,
            ..
        }
    ));
}

#[test]
fn an_order_cancelled_first_is_declined_without_a_charge() {
    let ledger = Ledger {
        payment: None,
        cancelled: true,
    };
    assert_eq!(
        decide(&ledger, Input::Event(&created(1500, 2, 3000))),
        Decision::Record(Record {
            amount: Money(3000),
            charge: Charge::Declined {
                reason: DeclineReason::OrderCancelled
            }
        })
    );
}

#[test]
fn a_second_order_created_charges_nothing() {
    for status in [
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
    ] {
        assert_eq!(
            decide(&paid_ledger(status), Input::Event(&created(1500, 2, 3000))),
            Decision::Nothing
        );
    }
}

#[test]
fn a_total_that_is_not_its_lines_is_refused_before_any_charge() {
    assert!(matches!(
        decide(&Ledger::default(), Input::Event(&created(1500, 2, 2999))),
        Decision::Refuse(_)
    ));
    assert!(matches!(
        decide(
            &Ledger::default(),
            Input::Event(&created(i64::MAX / 2, 3, 0))
        ),
        Decision::Refuse(_)
    ));
}

#[test]
fn a_cancel_refunds_a_succeeded_payment_once() {
    let ledger = paid_ledger(PaymentStatus::Succeeded);
    let Decision::Cancel {
        refund: Some(payment),
    } = decide(&ledger, Input::Event(&cancelled(OWNER)))
    else {
        panic!("a succeeded payment is refunded");
    };
    assert_eq!(
        saga::payment::refund(&payment),
        EventPayload::PaymentRefunded {
            payment_id: 5,
            amount: Money(3000),
            reason: RefundReason::OrderCancelled,
        }
    );
    // Refunded already, failed, or never charged: remembered, nothing refunded.
    for ledger in [
        paid_ledger(PaymentStatus::Refunded),
        paid_ledger(PaymentStatus::Failed),
        Ledger::default(),
    ] {
        assert_eq!(
            decide(&ledger, Input::Event(&cancelled(OWNER))),
            Decision::Cancel { refund: None }
        );
    }
}

#[test]
fn a_cancel_naming_another_owner_is_refused() {
    assert!(matches!(
        decide(
            &paid_ledger(PaymentStatus::Succeeded),
            Input::Event(&cancelled(8))
        ),
        Decision::Refuse(_)
    ));
}

#[test]
fn its_own_events_and_the_confirmation_ask_nothing() {
    let order = OrderId::new(1).unwrap();
    let owner = UserId::new(OWNER).unwrap();
    for payload in [
        EventPayload::OrderConfirmed {
            total_price: Money(3000),
        },
        EventPayload::PaymentSuccess {
            payment_id: 5,
            amount: Money(3000),
            transaction_id: TransactionId::parse("tx").unwrap(),
        },
        EventPayload::PaymentFailed {
            payment_id: 5,
            amount: Money(3000),
            reason: DeclineReason::CardDeclined,
        },
        EventPayload::PaymentRefunded {
            payment_id: 5,
            amount: Money(3000),
            reason: RefundReason::OrderCancelled,
        },
    ] {
        let event = Event::new(order, owner, payload);
        assert_eq!(
            decide(&paid_ledger(PaymentStatus::Succeeded), Input::Event(&event)),
            Decision::Nothing
        );
    }
}
