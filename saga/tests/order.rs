//! order-service's decisions, given an order, when something happens, then
//! this: every path of the saga, with no database, broker or service.

use saga::order::{
    Call, Caller, Change, Input, OrderState, OrderStatus, Outcome, Refusal, Reservation, StepKind,
    StockState, decide, is_settled, settlement,
};
use shared::id::{OrderId, ProductId, UserId};
use shared::kafka::events::{
    DeclineReason, Event, EventItem, EventPayload, OrderReason, RefundReason, TransactionId,
};
use shared::money::{Currency, Money};
use shared::stock::{OrderLine, Settlement, Shortfall};

const OWNER: i64 = 7;

fn order(status: OrderStatus, stock: StockState, total: Option<i64>) -> OrderState {
    OrderState {
        id: OrderId::new(1).unwrap(),
        user_id: UserId::new(OWNER).unwrap(),
        status,
        stock,
        total: total.map(Money),
        currency: Currency::Usd,
        customer_email: Some("ada@example.com".into()),
    }
}

/// A new order, its reservation not answered yet.
fn placed() -> OrderState {
    order(OrderStatus::Pending, StockState::Unknown, None)
}

/// An order whose units are held, for 2 x 1250 + 1 x 500 = 3000 cents.
fn held() -> OrderState {
    order(OrderStatus::Pending, StockState::Held, Some(3000))
}

fn lines() -> Vec<OrderLine> {
    vec![
        OrderLine::new(ProductId::new(10).unwrap(), 2),
        OrderLine::new(ProductId::new(11).unwrap(), 1),
    ]
}

fn items() -> Vec<EventItem> {
    vec![
        EventItem {
            product_id: ProductId::new(10).unwrap(),
            quantity: 2,
            unit_price: Money(1250),
        },
        EventItem {
            product_id: ProductId::new(11).unwrap(),
            quantity: 1,
            unit_price: Money(500),
        },
    ]
}

fn event(user: i64, payload: EventPayload) -> Event {
    Event::new(
        OrderId::new(1).unwrap(),
        UserId::new(user).unwrap(),
        payload,
    )
}

fn paid(amount: i64) -> Event {
    event(
        OWNER,
        EventPayload::PaymentSuccess {
            payment_id: 5,
            amount: Money(amount),
            transaction_id: TransactionId::parse("tx-1").unwrap(),
        },
    )
}

fn declined(amount: i64) -> Event {
    event(
        OWNER,
        EventPayload::PaymentFailed {
            payment_id: 5,
            amount: Money(amount),
            reason: DeclineReason::CardDeclined,
        },
    )
}

fn reserved(answer: Reservation, by: Caller, overdue: bool) -> saga::order::Decision {
    let lines = lines();
    decide(
        &placed(),
        Input::Reserved {
            lines: &lines,
            answer,
            by,
            overdue,
        },
    )
}

fn kinds(decision: &saga::order::Decision) -> Vec<StepKind> {
    decision.steps.iter().map(|s| s.kind).collect()
}

/// Applies the decision's change, as the shell's guarded write does.
fn after(mut state: OrderState, decision: &saga::order::Decision) -> OrderState {
    assert!(
        decision.change.applies_to(&state),
        "{decision:?} on {state:?}"
    );
    decision.change.apply(&mut state);
    state
}

#[test]
fn a_held_reservation_holds_the_order_and_announces_it() {
    let d = reserved(Reservation::Held { items: items() }, Caller::Request, false);
    assert_eq!(
        d.change,
        Change::Hold {
            items: items(),
            total: Money(3000)
        }
    );
    assert_eq!(kinds(&d), [StepKind::StockReserved]);
    assert_eq!(
        d.steps[0].detail.as_deref(),
        Some("2 x product 10 at 12.50, 1 x product 11 at 5.00; total 30.00")
    );
    match &d.publish {
        Some(EventPayload::OrderCreated {
            items: announced,
            total_price,
            customer_email,
            ..
        }) => {
            assert_eq!(announced, &items());
            assert_eq!(*total_price, Money(3000));
            assert_eq!(customer_email.as_deref(), Some("ada@example.com"));
        }
        other => panic!("expected order_created, got {other:?}"),
    }
    assert_eq!((d.then, d.outcome.clone()), (None, Outcome::Done));
    let state = after(placed(), &d);
    assert_eq!(
        (state.status, state.stock, state.total),
        (OrderStatus::Pending, StockState::Held, Some(Money(3000)))
    );
}

#[test]
fn a_reservation_of_other_lines_is_refused_and_touches_nothing() {
    let mut other = items();
    other[1].quantity = 3;
    let d = reserved(Reservation::Held { items: other }, Caller::Request, false);
    assert_eq!(
        d.change,
        Change::Reject {
            reason: OrderReason::StockRefused,
            short: None,
            stock: StockState::None,
            free_key: true
        }
    );
    assert!(matches!(d.outcome, Outcome::Rejected(Refusal::Refused(_))));
    assert_eq!(d.then, None);
    assert_eq!(d.publish, None);
}

#[test]
fn a_reservation_over_the_largest_total_is_rejected_and_released_now() {
    let huge = vec![EventItem {
        product_id: ProductId::new(10).unwrap(),
        quantity: 2,
        unit_price: Money(i64::MAX / 2),
    }];
    let lines = [OrderLine::new(ProductId::new(10).unwrap(), 2)];
    let d = decide(
        &placed(),
        Input::Reserved {
            lines: &lines,
            answer: Reservation::Held { items: huge },
            by: Caller::Request,
            overdue: false,
        },
    );
    assert_eq!(
        d.change,
        Change::Reject {
            reason: OrderReason::TotalTooLarge,
            short: None,
            stock: StockState::Unknown,
            free_key: false
        }
    );
    assert_eq!(d.then, Some(Call::Settle(Settlement::Release)));
    assert_eq!(d.outcome, Outcome::Rejected(Refusal::TotalTooLarge));
}

#[test]
fn insufficient_stock_rejects_with_the_short_product() {
    let d = reserved(
        Reservation::Insufficient {
            product_id: Some(ProductId::new(11).unwrap()),
            available: 0,
        },
        Caller::Request,
        false,
    );
    let short = Shortfall {
        product_id: ProductId::new(11).unwrap(),
        available: 0,
    };
    assert_eq!(
        d.change,
        Change::Reject {
            reason: OrderReason::InsufficientStock,
            short: Some(short),
            stock: StockState::None,
            free_key: false
        }
    );
    assert_eq!(kinds(&d), [StepKind::StockRefused]);
    assert_eq!(
        d.steps[0].detail.as_deref(),
        Some("insufficient_stock: product 11 has 0 in stock")
    );
    assert_eq!(
        d.outcome,
        Outcome::Rejected(Refusal::Insufficient {
            product_id: short.product_id,
            stock: 0
        })
    );
    let state = after(placed(), &d);
    assert!(is_settled(&state), "nothing was held: {state:?}");
}

#[test]
fn an_unnamed_short_product_is_the_first_line() {
    let d = reserved(
        Reservation::Insufficient {
            product_id: None,
            available: 3,
        },
        Caller::Request,
        false,
    );
    assert_eq!(
        d.outcome,
        Outcome::Rejected(Refusal::Insufficient {
            product_id: ProductId::new(10).unwrap(),
            stock: 3
        })
    );
}

#[test]
fn every_other_answer_rejects_and_says_whether_units_may_be_held() {
    let cases = [
        (
            Reservation::Released,
            OrderReason::StockRefused,
            StockState::Released,
            true,
        ),
        (
            Reservation::Unknown,
            OrderReason::StockRefused,
            StockState::Unknown,
            true,
        ),
        (
            Reservation::ProductNotFound("product 11 not found".into()),
            OrderReason::ProductNotFound,
            StockState::None,
            false,
        ),
        (
            Reservation::TotalTooLarge,
            OrderReason::TotalTooLarge,
            StockState::None,
            false,
        ),
        (
            Reservation::Refused("invalid".into()),
            OrderReason::StockRefused,
            StockState::Unknown,
            true,
        ),
    ];
    for (answer, reason, stock, free_key) in cases {
        let d = reserved(answer.clone(), Caller::Recovery, false);
        assert_eq!(
            d.change,
            Change::Reject {
                reason,
                short: None,
                stock,
                free_key
            },
            "{answer:?}"
        );
        assert_eq!(kinds(&d), [StepKind::StockRefused], "{answer:?}");
        assert!(matches!(d.outcome, Outcome::Rejected(_)), "{answer:?}");
        // Units that may be held are released by the recovery loop.
        let state = after(placed(), &d);
        assert_eq!(
            settlement(state.status, state.stock),
            (stock == StockState::Unknown).then_some(Settlement::Release)
        );
    }
    assert_eq!(
        reserved(
            Reservation::ProductNotFound("gone".into()),
            Caller::Request,
            false
        )
        .outcome,
        Outcome::Rejected(Refusal::ProductNotFound("gone".into()))
    );
}

#[test]
fn no_answer_rejects_a_request_but_leaves_recovery_to_try_again() {
    // A request's call that never left (breaker open) held nothing.
    let d = reserved(
        Reservation::Unavailable { sent: false },
        Caller::Request,
        false,
    );
    assert_eq!(
        d.change,
        Change::Reject {
            reason: OrderReason::StockServiceUnavailable,
            short: None,
            stock: StockState::None,
            free_key: true
        }
    );
    assert_eq!(kinds(&d), [StepKind::Rejected]);
    assert_eq!(d.outcome, Outcome::Rejected(Refusal::Unavailable));
    // One that left may have held units.
    let d = reserved(
        Reservation::Unavailable { sent: true },
        Caller::Request,
        false,
    );
    assert!(matches!(
        d.change,
        Change::Reject {
            stock: StockState::Unknown,
            ..
        }
    ));
    // The recovery loop tries again until the payment timeout...
    let d = reserved(
        Reservation::Unavailable { sent: true },
        Caller::Recovery,
        false,
    );
    assert_eq!((d.change, d.outcome), (Change::None, Outcome::Later));
    // ...then gives up, leaving the units to be released.
    let d = reserved(
        Reservation::Unavailable { sent: false },
        Caller::Recovery,
        true,
    );
    assert!(matches!(
        d.change,
        Change::Reject {
            stock: StockState::Unknown,
            ..
        }
    ));
}

#[test]
fn an_answer_for_an_order_that_moved_on_changes_nothing() {
    let lines = lines();
    let cancelled = order(OrderStatus::Cancelled, StockState::Released, None);
    let d = decide(
        &cancelled,
        Input::Reserved {
            lines: &lines,
            answer: Reservation::Held { items: items() },
            by: Caller::Recovery,
            overdue: false,
        },
    );
    assert_eq!((d.change, d.publish, d.then), (Change::None, None, None));
    // And a hold decided on a stale read is not written to it.
    let hold = reserved(Reservation::Held { items: items() }, Caller::Request, false);
    assert!(!hold.change.applies_to(&cancelled));
}

#[test]
fn a_hold_that_fails_for_good_rejects_and_releases_now() {
    let d = decide(
        &placed(),
        Input::HoldFailed {
            error: "numeric field overflow".into(),
        },
    );
    assert_eq!(
        d.change,
        Change::Reject {
            reason: OrderReason::StepFailed,
            short: None,
            stock: StockState::Unknown,
            free_key: false
        }
    );
    assert_eq!(d.then, Some(Call::Settle(Settlement::Release)));
    assert!(
        matches!(d.outcome, Outcome::Rejected(Refusal::Refused(ref m)) if m.contains("overflow"))
    );
}

#[test]
fn a_payment_pays_the_order_confirms_it_and_commits_its_stock() {
    let d = decide(&held(), Input::Event(&paid(3000)));
    assert_eq!(
        d.change,
        Change::Finish {
            to: OrderStatus::Paid,
            reason: None
        }
    );
    assert_eq!(kinds(&d), [StepKind::PaymentReceived, StepKind::Paid]);
    assert_eq!(
        d.publish,
        Some(EventPayload::OrderConfirmed {
            total_price: Money(3000)
        })
    );
    assert_eq!(d.then, Some(Call::Settle(Settlement::Commit)));
    let paid = after(held(), &d);
    let settled = decide(&paid, Input::Settled(Settlement::Commit));
    assert_eq!(kinds(&settled), [StepKind::StockCommitted]);
    assert!(is_settled(&after(paid, &settled)));
}

#[test]
fn a_decline_fails_the_order_cancels_it_and_releases_its_stock() {
    let d = decide(&held(), Input::Event(&declined(3000)));
    assert_eq!(
        d.change,
        Change::Finish {
            to: OrderStatus::Failed,
            reason: Some(OrderReason::PaymentFailed)
        }
    );
    assert_eq!(kinds(&d), [StepKind::PaymentReceived, StepKind::Failed]);
    assert_eq!(
        d.steps[1].detail.as_deref(),
        Some("declined: card_declined")
    );
    assert_eq!(
        d.publish,
        Some(EventPayload::OrderCancelled {
            reason: OrderReason::PaymentFailed
        })
    );
    assert_eq!(d.then, Some(Call::Settle(Settlement::Release)));
    let failed = after(held(), &d);
    let settled = decide(&failed, Input::Settled(Settlement::Release));
    assert_eq!(kinds(&settled), [StepKind::StockReleased]);
    assert!(is_settled(&after(failed, &settled)));
}

#[test]
fn the_customer_or_the_timeout_cancels_a_pending_order() {
    for (reason, detail) in [
        (OrderReason::UserCancelled, "user_cancelled"),
        (OrderReason::Timeout, "timeout"),
    ] {
        let d = decide(&held(), Input::Cancel(reason));
        assert_eq!(
            d.change,
            Change::Finish {
                to: OrderStatus::Cancelled,
                reason: Some(reason)
            }
        );
        assert_eq!(kinds(&d), [StepKind::Cancelled]);
        assert_eq!(d.steps[0].detail.as_deref(), Some(detail));
        assert_eq!(d.publish, Some(EventPayload::OrderCancelled { reason }));
        assert_eq!(d.then, Some(Call::Settle(Settlement::Release)));
    }
    // A cancel while the reservation is unanswered releases whatever it holds.
    let d = decide(&placed(), Input::Cancel(OrderReason::UserCancelled));
    assert_eq!(d.then, Some(Call::Settle(Settlement::Release)));
    // A finished order is not cancelled, and nothing is said.
    let d = decide(
        &order(OrderStatus::Paid, StockState::Committed, Some(3000)),
        Input::Cancel(OrderReason::UserCancelled),
    );
    assert_eq!(
        (d.change, d.steps.len(), d.publish),
        (Change::None, 0, None)
    );
}

#[test]
fn a_payment_after_the_cancel_is_noted_and_its_refund_recorded() {
    let cancelled = order(OrderStatus::Cancelled, StockState::Released, Some(3000));
    let d = decide(&cancelled, Input::Event(&paid(3000)));
    assert_eq!(
        (d.change.clone(), d.publish.clone(), d.then),
        (Change::None, None, None)
    );
    assert_eq!(kinds(&d), [StepKind::PaymentReceived]);
    assert_eq!(
        d.steps[0].detail.as_deref(),
        Some("ignored: the order is already cancelled")
    );
    let refund = event(
        OWNER,
        EventPayload::PaymentRefunded {
            payment_id: 5,
            amount: Money(3000),
            reason: RefundReason::OrderCancelled,
        },
    );
    let d = decide(&cancelled, Input::Event(&refund));
    assert_eq!(kinds(&d), [StepKind::Refunded]);
    assert_eq!(d.steps[0].detail.as_deref(), Some("30.00: order_cancelled"));
    assert_eq!(d.change, Change::None);
}

#[test]
fn a_redelivered_payment_result_moves_nothing() {
    let paid_order = order(OrderStatus::Paid, StockState::Committed, Some(3000));
    for late in [paid(3000), declined(3000)] {
        let d = decide(&paid_order, Input::Event(&late));
        assert_eq!(
            (d.change.clone(), d.publish.clone(), d.then),
            (Change::None, None, None)
        );
        assert_eq!(kinds(&d), [StepKind::PaymentReceived]);
        assert_eq!(d.outcome, Outcome::Done);
    }
}

#[test]
fn a_payment_that_contradicts_the_order_is_refused() {
    // Another owner, another amount, or a payment before the hold (reordered).
    for (state, event) in [
        (held(), event(8, paid(3000).payload)),
        (held(), paid(2999)),
        (held(), declined(1)),
        (
            order(OrderStatus::Pending, StockState::Unknown, Some(3000)),
            paid(3000),
        ),
        (placed(), paid(3000)),
    ] {
        let d = decide(&state, Input::Event(&event));
        assert!(
            matches!(d.outcome, Outcome::Contradicted(_)),
            "{state:?} {event:?}: {d:?}"
        );
        assert_eq!(
            (d.change, d.steps.len(), d.publish),
            (Change::None, 0, None)
        );
    }
}

#[test]
fn its_own_events_ask_nothing_of_the_order() {
    for payload in [
        EventPayload::OrderCreated {
            items: items(),
            total_price: Money(3000),
            currency: Currency::Usd,
            customer_email: None,
        },
        EventPayload::OrderConfirmed {
            total_price: Money(3000),
        },
        EventPayload::OrderCancelled {
            reason: OrderReason::Timeout,
        },
    ] {
        let d = decide(&held(), Input::Event(&event(OWNER, payload)));
        assert_eq!(
            (d.change, d.steps.len(), d.publish),
            (Change::None, 0, None)
        );
    }
}

#[test]
fn recovery_reserves_an_unanswered_order_and_settles_a_finished_one() {
    let cases = [
        (
            OrderStatus::Pending,
            StockState::Unknown,
            Some(Call::Reserve),
        ),
        (OrderStatus::Pending, StockState::Held, None),
        (
            OrderStatus::Paid,
            StockState::Held,
            Some(Call::Settle(Settlement::Commit)),
        ),
        (
            OrderStatus::Cancelled,
            StockState::Held,
            Some(Call::Settle(Settlement::Release)),
        ),
        (
            OrderStatus::Rejected,
            StockState::Unknown,
            Some(Call::Settle(Settlement::Release)),
        ),
        (OrderStatus::Failed, StockState::Released, None),
        (OrderStatus::Rejected, StockState::None, None),
    ];
    for (status, stock, call) in cases {
        let d = decide(&order(status, stock, Some(3000)), Input::Recover);
        assert_eq!(d.then, call, "{status} {stock}");
        assert_eq!(d.change, Change::None);
    }
}

#[test]
fn a_settlement_recorded_twice_changes_the_stock_once() {
    let committed = order(OrderStatus::Paid, StockState::Committed, Some(3000));
    let d = decide(&committed, Input::Settled(Settlement::Commit));
    assert!(!d.change.applies_to(&committed));
    let released = order(OrderStatus::Cancelled, StockState::Released, Some(3000));
    assert!(
        !decide(&released, Input::Settled(Settlement::Release))
            .change
            .applies_to(&released)
    );
}
