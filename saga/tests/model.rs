//! The saga, checked exhaustively (docs/saga.md, "The model check").
//!
//! A model of the whole saga built on its real decisions
//! ([`saga::order::decide`], [`saga::payment::decide`]): two orders that
//! share one product's stock, order-service's requests and recovery loop,
//! product-service's reservations, payment-service and its gateway, and
//! the topic between them. `stateright` explores every interleaving of:
//! events delivered in any order, any of them twice; a product-service call
//! that fails before or after its effect; a hold that fails for good;
//! order-service crashing between any two effects (its calls in flight are
//! lost, the recovery loop finds their orders); the recovery loop, the
//! payment timeout and the customer's cancel at any moment.
//!
//! Each state is checked for the saga's invariants, and every final state
//! (nothing left to happen) for its promises: every order ends, its stock
//! settled exactly once, no money kept for an unpaid order, at most one
//! refund, and a timeline that agrees with the order. A seeded bug (the
//! inbox check removed) must be caught.

use std::collections::BTreeSet;

use chrono::DateTime;
use saga::order::{
    self, Call, Caller, Change, OrderState, OrderStatus, Reservation, StepKind, StockState,
};
use saga::payment::{self, Charge, Ledger, PaymentStatus};
use shared::id::{OrderId, ProductId, UserId};
use shared::kafka::events::{DeclineReason, Event, EventItem, EventPayload, TransactionId};
use shared::money::{Currency, Money};
use shared::stock::{OrderLine, Settlement};
use stateright::{Checker, Model, Property};

/// The one product the orders share, and its price.
const PRODUCT: i64 = 10;
const PRICE: i64 = 100;

/// A defect put into the model on purpose: the checker must find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// The consumers' inbox check removed: a redelivered event is applied again.
    NoInbox,
}

/// How much of each fault a run may suffer (each bound keeps the state space finite).
#[derive(Debug, Clone, Copy)]
struct Faults {
    /// Events delivered a second time.
    duplicates: u8,
    /// product-service calls that fail (before or after their effect), holds that fail for good.
    failures: u8,
    /// order-service crashes (calls in flight lost).
    crashes: u8,
    /// Customer cancels.
    cancels: u8,
    /// Rounds of the recovery loop that take an order while a call for it
    /// is still in flight (a request slower than the grace period). Rounds
    /// that find no call in flight are not limited: each makes progress or
    /// spends another fault.
    races: u8,
}

struct SagaModel {
    /// Units of the product in stock.
    stock: i32,
    /// Units each order asks for.
    wants: Vec<i32>,
    faults: Faults,
    bug: Option<Bug>,
}

/// product-service's reservation of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Resv {
    None,
    Reserved,
    Insufficient,
    Released,
    Committed,
}

/// An answer of product-service's as order-service got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Answer {
    Held,
    Insufficient(i32),
    Released,
    Unavailable,
}

/// An event on the topic, in short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Created,
    Success,
    Declined,
    Confirmed,
    Cancelled,
    Refunded,
}

/// Its id is the order's and its place among the order's events, so
/// interleavings that publish the same events reach the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Msg {
    order: u8,
    id: u8,
    kind: Kind,
    /// Deliveries still to come.
    copies: u8,
    /// The payment an outcome or refund is about.
    payment: Option<i64>,
    amount: i64,
}

/// Work order-service has in flight (lost in a crash). A reservation is
/// only ever asked for an order read pending with its stock unknown, so
/// that is what its answer is decided on ([`fresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Task {
    /// ReserveStock to call; `recovery`: the recovery loop asks (else a request).
    Reserve { order: u8, recovery: bool },
    /// Its answer, to decide on and write.
    Answer {
        order: u8,
        recovery: bool,
        answer: Answer,
    },
    /// A settle call to make; `commit`, or release.
    Settle { order: u8, commit: bool },
    /// A settle call that succeeded, to record.
    Settled { order: u8, commit: bool },
}

impl Task {
    fn order(&self) -> usize {
        match *self {
            Task::Reserve { order, .. }
            | Task::Answer { order, .. }
            | Task::Settle { order, .. }
            | Task::Settled { order, .. } => order as usize,
        }
    }
}

fn how(commit: bool) -> Settlement {
    if commit {
        Settlement::Commit
    } else {
        Settlement::Release
    }
}

fn caller(recovery: bool) -> Caller {
    if recovery {
        Caller::Recovery
    } else {
        Caller::Request
    }
}

/// Order `o` as placed: pending, its stock unknown.
fn fresh(o: usize) -> OrderState {
    OrderState {
        id: order_id(o),
        user_id: owner(o),
        status: OrderStatus::Pending,
        stock: StockState::Unknown,
        total: None,
        currency: Currency::Usd,
        customer_email: None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    /// Units each order asks for (fixed).
    wants: Vec<i32>,
    /// Units of the product at first (fixed).
    stock: i32,
    orders: Vec<OrderState>,
    steps: Vec<Vec<StepKind>>,
    order_inbox: BTreeSet<(u8, u8)>,
    /// Sorted: a multiset.
    tasks: Vec<Task>,
    /// Sorted: a multiset.
    topic: Vec<Msg>,
    /// Events each order has had published.
    published: Vec<u8>,
    available: i32,
    resv: Vec<Resv>,
    /// Times each order's units were committed, and released.
    commits: Vec<u8>,
    releases: Vec<u8>,
    ledgers: Vec<Ledger>,
    payment_inbox: BTreeSet<(u8, u8)>,
    refunds: Vec<u8>,
    /// Events a consumer refused (contradicted, or not valid).
    refused: u8,
    duplicates: u8,
    failures: u8,
    crashes: u8,
    cancels: u8,
    races: u8,
    /// Settle calls product-service refused (the saga asked the impossible).
    bad_settles: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Action {
    /// Move task `i` on; `fail` for the faulty outcome of its step.
    Task {
        i: usize,
        fail: bool,
    },
    /// Deliver topic message `i`; `again`: it will come once more;
    /// `approve`: the gateway's answer, for an `order_created`.
    Deliver {
        i: usize,
        again: bool,
        approve: bool,
    },
    Recover {
        order: u8,
    },
    Timeout {
        order: u8,
    },
    Cancel {
        order: u8,
    },
    Crash,
}

fn order_id(o: usize) -> OrderId {
    OrderId::new(o as i64 + 1).expect("positive")
}

fn owner(o: usize) -> UserId {
    UserId::new(o as i64 + 100).expect("positive")
}

fn lines(quantity: i32) -> Vec<OrderLine> {
    vec![OrderLine::new(
        ProductId::new(PRODUCT).expect("positive"),
        quantity,
    )]
}

fn items(quantity: i32) -> Vec<EventItem> {
    vec![EventItem {
        product_id: ProductId::new(PRODUCT).expect("positive"),
        quantity,
        unit_price: Money(PRICE),
    }]
}

fn count(steps: &[StepKind], kind: StepKind) -> usize {
    steps.iter().filter(|k| **k == kind).count()
}

impl Msg {
    /// The event as a consumer reads it; `quantity`: what its order asks for.
    fn event(&self, quantity: i32) -> Event {
        let o = self.order as usize;
        let payload = match self.kind {
            Kind::Created => EventPayload::OrderCreated {
                items: items(quantity),
                total_price: Money(self.amount),
                currency: Currency::Usd,
                customer_email: None,
            },
            Kind::Success => EventPayload::PaymentSuccess {
                payment_id: self.payment.unwrap_or(0),
                amount: Money(self.amount),
                transaction_id: TransactionId::parse("tx").expect("valid"),
            },
            Kind::Declined => EventPayload::PaymentFailed {
                payment_id: self.payment.unwrap_or(0),
                amount: Money(self.amount),
                reason: DeclineReason::CardDeclined,
            },
            Kind::Confirmed => EventPayload::OrderConfirmed {
                total_price: Money(self.amount),
            },
            Kind::Cancelled => EventPayload::OrderCancelled {
                reason: shared::kafka::events::OrderReason::UserCancelled,
            },
            Kind::Refunded => EventPayload::PaymentRefunded {
                payment_id: self.payment.unwrap_or(0),
                amount: Money(self.amount),
                reason: shared::kafka::events::RefundReason::OrderCancelled,
            },
        };
        Event {
            event_id: uuid::Uuid::from_u128(u128::from(self.order) << 8 | u128::from(self.id)),
            occurred_at: DateTime::UNIX_EPOCH,
            order_id: order_id(o),
            user_id: owner(o),
            payload,
        }
    }

    /// Whether order-service consumes it (else payment-service does).
    fn for_orders(&self) -> bool {
        matches!(self.kind, Kind::Success | Kind::Declined | Kind::Refunded)
    }
}

impl State {
    fn publish(&mut self, o: usize, payload: &EventPayload) {
        let (kind, payment, amount) = match payload {
            EventPayload::OrderCreated { total_price, .. } => (Kind::Created, None, total_price.0),
            EventPayload::PaymentSuccess {
                payment_id, amount, ..
            } => (Kind::Success, Some(*payment_id), amount.0),
            EventPayload::PaymentFailed {
                payment_id, amount, ..
            } => (Kind::Declined, Some(*payment_id), amount.0),
            EventPayload::OrderConfirmed { total_price } => (Kind::Confirmed, None, total_price.0),
            EventPayload::OrderCancelled { .. } => (Kind::Cancelled, None, 0),
            EventPayload::PaymentRefunded {
                payment_id, amount, ..
            } => (Kind::Refunded, Some(*payment_id), amount.0),
        };
        // order_confirmed asks nothing of anyone: it is not delivered.
        if kind == Kind::Confirmed {
            return;
        }
        let msg = Msg {
            order: o as u8,
            id: self.published[o],
            kind,
            copies: 1,
            payment,
            amount,
        };
        self.published[o] += 1;
        let at = self.topic.partition_point(|m| *m < msg);
        self.topic.insert(at, msg);
    }

    fn add(&mut self, task: Task) {
        let at = self.tasks.partition_point(|t| *t < task);
        self.tasks.insert(at, task);
    }

    /// product-service's ReserveStock, idempotent by order id.
    fn reserve(&mut self, o: usize) -> Answer {
        match self.resv[o] {
            Resv::Reserved | Resv::Committed => Answer::Held,
            Resv::Released => Answer::Released,
            Resv::Insufficient => Answer::Insufficient(self.available),
            Resv::None if self.available >= self.wants[o] => {
                self.available -= self.wants[o];
                self.resv[o] = Resv::Reserved;
                Answer::Held
            }
            Resv::None => {
                self.resv[o] = Resv::Insufficient;
                Answer::Insufficient(self.available)
            }
        }
    }

    /// product-service's settle calls; false when it refuses.
    fn settle(&mut self, o: usize, how: Settlement) -> bool {
        match (how, self.resv[o]) {
            (Settlement::Release, Resv::None) => {
                // A tombstone: a late ReserveStock holds nothing.
                self.resv[o] = Resv::Released;
                true
            }
            (Settlement::Release, Resv::Reserved) => {
                self.available += self.wants[o];
                self.resv[o] = Resv::Released;
                self.releases[o] += 1;
                true
            }
            (Settlement::Commit, Resv::Reserved) => {
                self.resv[o] = Resv::Committed;
                self.commits[o] += 1;
                true
            }
            (Settlement::Release, Resv::Insufficient | Resv::Released)
            | (Settlement::Commit, Resv::Committed) => true,
            _ => false,
        }
    }

    /// Writes an order-service decision as the shell does: only if its
    /// change applies to the order as it is now, then its call.
    fn write(&mut self, o: usize, decision: &order::Decision) -> bool {
        if !decision.change.applies_to(&self.orders[o]) {
            return false;
        }
        decision.change.apply(&mut self.orders[o]);
        self.steps[o].extend(decision.steps.iter().map(|s| s.kind));
        if let Some(payload) = &decision.publish {
            self.publish(o, payload);
        }
        if let Some(Call::Settle(how)) = decision.then {
            self.add(Task::Settle {
                order: o as u8,
                commit: how == Settlement::Commit,
            });
        }
        true
    }

    /// Whether the recovery loop finds order `o` unfinished (`Store::unsettled`).
    fn unsettled(&self, o: usize) -> bool {
        let order = &self.orders[o];
        match order.status {
            OrderStatus::Pending => order.stock == StockState::Unknown,
            _ => matches!(order.stock, StockState::Unknown | StockState::Held),
        }
    }
}

impl SagaModel {
    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// A task's step; `fail` for its faulty outcome.
    fn run(&self, s: &mut State, i: usize, fail: bool) {
        let task = s.tasks.remove(i);
        match task {
            Task::Reserve { order: o, recovery } => {
                let answer = if fail {
                    s.failures -= 1;
                    // Lost on the way there, or on the way back after its effect:
                    // both are the same to the caller; the model takes the worse.
                    s.reserve(o as usize);
                    Answer::Unavailable
                } else {
                    s.reserve(o as usize)
                };
                s.add(Task::Answer {
                    order: o,
                    recovery,
                    answer,
                });
            }
            Task::Answer {
                order: o,
                recovery,
                answer,
            } => {
                // For the recovery loop's unanswered call, the faulty outcome
                // is that the payment timeout has passed; it is no fault.
                let overdue = fail && answer == Answer::Unavailable;
                let o = o as usize;
                let read = fresh(o);
                let lines = lines(s.wants[o]);
                let answer = match answer {
                    Answer::Held => Reservation::Held {
                        items: items(s.wants[o]),
                    },
                    Answer::Insufficient(available) => Reservation::Insufficient {
                        product_id: ProductId::new(PRODUCT).ok(),
                        available,
                    },
                    Answer::Released => Reservation::Released,
                    Answer::Unavailable => Reservation::Unavailable { sent: true },
                };
                let decision = order::decide(
                    &read,
                    order::Input::Reserved {
                        lines: &lines,
                        answer,
                        by: caller(recovery),
                        overdue,
                    },
                );
                let hold = matches!(decision.change, Change::Hold { .. });
                if hold && fail {
                    // The hold fails for good: the saga rejects and releases.
                    s.failures -= 1;
                    let failed = order::decide(
                        &read,
                        order::Input::HoldFailed {
                            error: "for good".into(),
                        },
                    );
                    s.write(o, &failed);
                } else {
                    s.write(o, &decision);
                }
            }
            Task::Settle { order: o, commit } => {
                if fail {
                    // The call fails: the recovery loop settles it later.
                    s.failures -= 1;
                } else if s.settle(o as usize, how(commit)) {
                    s.add(Task::Settled { order: o, commit });
                } else {
                    s.bad_settles += 1;
                }
            }
            Task::Settled { order: o, commit } => {
                let o = o as usize;
                let decision = order::decide(&s.orders[o], order::Input::Settled(how(commit)));
                s.write(o, &decision);
            }
        }
    }

    fn deliver(&self, s: &mut State, i: usize, again: bool, approve: bool) {
        if again {
            s.duplicates -= 1;
            s.topic[i].copies += 1;
        }
        let key = (s.topic[i].order, s.topic[i].id);
        let msg = s.topic[i];
        s.topic[i].copies -= 1;
        if s.topic[i].copies == 0 {
            s.topic.remove(i);
        }
        let o = msg.order as usize;
        let event = msg.event(s.wants[o]);
        if msg.for_orders() {
            if !self.has(Bug::NoInbox) && s.order_inbox.contains(&key) {
                return;
            }
            let decision = order::decide(&s.orders[o], order::Input::Event(&event));
            if let order::Outcome::Contradicted(_) = decision.outcome {
                s.refused += 1;
                return;
            }
            s.order_inbox.insert(key);
            s.write(o, &decision);
            return;
        }
        if !self.has(Bug::NoInbox) && s.payment_inbox.contains(&key) {
            return;
        }
        let ledger = &s.ledgers[o];
        let decision = match payment::decide(ledger, payment::Input::Event(&event)) {
            payment::Decision::Charge(amount) => {
                let charge = if approve {
                    Charge::Approved {
                        transaction_id: TransactionId::parse("tx").expect("valid"),
                    }
                } else {
                    Charge::Declined {
                        reason: DeclineReason::CardDeclined,
                    }
                };
                payment::decide(
                    ledger,
                    payment::Input::Charged {
                        amount,
                        charge: &charge,
                    },
                )
            }
            decision => decision,
        };
        match decision {
            payment::Decision::Nothing => {}
            payment::Decision::Refuse(_) | payment::Decision::Charge(_) => {
                s.refused += 1;
                return;
            }
            payment::Decision::Record(record) => {
                let id = o as i64 + 1;
                s.ledgers[o].payment = Some(payment::Payment {
                    id,
                    user_id: event.user_id,
                    amount: record.amount,
                    status: record.status(),
                });
                s.publish(o, &record.announce(id));
            }
            payment::Decision::Cancel { refund } => {
                s.ledgers[o].cancelled = true;
                if let Some(paid) = refund
                    && let Some(current) = &mut s.ledgers[o].payment
                    && current.status == PaymentStatus::Succeeded
                {
                    current.status = PaymentStatus::Refunded;
                    s.refunds[o] += 1;
                    s.publish(o, &payment::refund(&paid));
                }
            }
        }
        s.payment_inbox.insert(key);
    }

    fn cancel(&self, s: &mut State, o: usize, reason: shared::kafka::events::OrderReason) {
        let decision = order::decide(&s.orders[o], order::Input::Cancel(reason));
        s.write(o, &decision);
    }

    /// Whether nothing is left to happen.
    fn is_final(&self, s: &State) -> bool {
        let mut actions = Vec::new();
        self.actions(s, &mut actions);
        actions.is_empty()
    }
}

impl Model for SagaModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        // Both orders placed (pending, their steps `placed`), their
        // requests about to call ReserveStock.
        let n = self.wants.len();
        let tasks = (0..n)
            .map(|o| Task::Reserve {
                order: o as u8,
                recovery: false,
            })
            .collect();
        vec![State {
            wants: self.wants.clone(),
            stock: self.stock,
            orders: (0..n).map(fresh).collect(),
            steps: vec![vec![StepKind::Placed]; n],
            order_inbox: BTreeSet::new(),
            tasks,
            topic: Vec::new(),
            published: vec![0; n],
            available: self.stock,
            resv: vec![Resv::None; n],
            commits: vec![0; n],
            releases: vec![0; n],
            ledgers: vec![Ledger::default(); n],
            payment_inbox: BTreeSet::new(),
            refunds: vec![0; n],
            refused: 0,
            duplicates: self.faults.duplicates,
            failures: self.faults.failures,
            crashes: self.faults.crashes,
            cancels: self.faults.cancels,
            races: self.faults.races,
            bad_settles: 0,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (i, task) in s.tasks.iter().enumerate() {
            actions.push(Action::Task { i, fail: false });
            let can_fail = match task {
                Task::Reserve { .. } | Task::Settle { .. } => s.failures > 0,
                Task::Answer { answer, .. } => {
                    (*answer == Answer::Held && s.failures > 0) || *answer == Answer::Unavailable
                }
                Task::Settled { .. } => false,
            };
            if can_fail {
                actions.push(Action::Task { i, fail: true });
            }
        }
        for (i, msg) in s.topic.iter().enumerate() {
            let approvals: &[bool] = if msg.kind == Kind::Created {
                &[true, false]
            } else {
                &[true]
            };
            for &approve in approvals {
                actions.push(Action::Deliver {
                    i,
                    again: false,
                    approve,
                });
                if s.duplicates > 0 {
                    actions.push(Action::Deliver {
                        i,
                        again: true,
                        approve,
                    });
                }
            }
        }
        for o in 0..s.orders.len() {
            let order = &s.orders[o];
            let busy = s.tasks.iter().any(|t| t.order() == o);
            if s.unsettled(o) && (!busy || s.races > 0) {
                actions.push(Action::Recover { order: o as u8 });
            }
            if order.status == OrderStatus::Pending && order.stock == StockState::Held {
                actions.push(Action::Timeout { order: o as u8 });
            }
            if order.status == OrderStatus::Pending && s.cancels > 0 {
                actions.push(Action::Cancel { order: o as u8 });
            }
        }
        if s.crashes > 0 && !s.tasks.is_empty() {
            actions.push(Action::Crash);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Task { i, fail } => self.run(&mut s, i, fail),
            Action::Deliver { i, again, approve } => self.deliver(&mut s, i, again, approve),
            Action::Recover { order: o } => {
                let o = o as usize;
                if s.tasks.iter().any(|t| t.order() == o) {
                    s.races -= 1;
                }
                match order::decide(&s.orders[o], order::Input::Recover).then {
                    Some(Call::Reserve) => s.add(Task::Reserve {
                        order: o as u8,
                        recovery: true,
                    }),
                    Some(Call::Settle(how)) => s.add(Task::Settle {
                        order: o as u8,
                        commit: how == Settlement::Commit,
                    }),
                    None => {}
                }
            }
            Action::Timeout { order: o } => self.cancel(
                &mut s,
                o as usize,
                shared::kafka::events::OrderReason::Timeout,
            ),
            Action::Cancel { order: o } => {
                s.cancels -= 1;
                self.cancel(
                    &mut s,
                    o as usize,
                    shared::kafka::events::OrderReason::UserCancelled,
                )
            }
            Action::Crash => {
                s.crashes -= 1;
                s.tasks.clear();
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no oversell, no unit lost", |_, s: &State| {
                let out: i32 = (0..s.orders.len())
                    .filter(|&o| matches!(s.resv[o], Resv::Reserved | Resv::Committed))
                    .map(|o| s.wants[o])
                    .sum();
                s.available >= 0 && s.available + out == s.stock
            }),
            Property::always("stock settled at most once", |_, s: &State| {
                (0..s.orders.len()).all(|o| s.commits[o] + s.releases[o] <= 1)
            }),
            Property::always("at most one refund", |_, s: &State| {
                (0..s.orders.len()).all(|o| s.refunds[o] <= 1)
            }),
            Property::always("no event refused", |_, s: &State| s.refused == 0),
            Property::always("no settlement refused", |_, s: &State| s.bad_settles == 0),
            Property::always("the timeline agrees with the order", |_, s: &State| {
                (0..s.orders.len()).all(|o| {
                    let (order, steps) = (&s.orders[o], &s.steps[o]);
                    let once = |kind, holds: bool| count(steps, kind) == usize::from(holds);
                    once(StepKind::Paid, order.status == OrderStatus::Paid)
                        && once(StepKind::Failed, order.status == OrderStatus::Failed)
                        && once(StepKind::Cancelled, order.status == OrderStatus::Cancelled)
                        && count(steps, StepKind::StockRefused) + count(steps, StepKind::Rejected)
                            == usize::from(order.status == OrderStatus::Rejected)
                        && once(
                            StepKind::StockCommitted,
                            order.stock == StockState::Committed,
                        )
                        && count(steps, StepKind::StockReserved) <= 1
                        && count(steps, StepKind::StockReleased) <= 1
                        && count(steps, StepKind::Refunded) <= usize::from(s.refunds[o])
                })
            }),
            Property::always(
                "every order ends, its stock settled",
                |m: &SagaModel, s: &State| {
                    !m.is_final(s)
                        || (0..s.orders.len()).all(|o| {
                            order::is_settled(&s.orders[o])
                                && count(&s.steps[o], StepKind::Refunded)
                                    == usize::from(s.refunds[o])
                                && s.resv[o] != Resv::Reserved
                                && (s.resv[o] == Resv::Committed)
                                    == (s.orders[o].stock == StockState::Committed)
                        })
                },
            ),
            Property::always(
                "no money kept for an unpaid order",
                |m: &SagaModel, s: &State| {
                    !m.is_final(s)
                        || (0..s.orders.len()).all(|o| {
                            let charged = s.ledgers[o]
                                .payment
                                .as_ref()
                                .is_some_and(|p| p.status == PaymentStatus::Succeeded);
                            charged == (s.orders[o].status == OrderStatus::Paid)
                        })
                },
            ),
            Property::sometimes("an order is paid", |_, s: &State| {
                s.orders.iter().any(|o| o.status == OrderStatus::Paid)
            }),
            Property::sometimes("a paid order is refunded", |_, s: &State| {
                s.refunds.contains(&1)
            }),
        ]
    }
}

/// Two orders that cannot both have their units (2 in stock; they ask for
/// 1 and 2), with one of each fault.
fn two_orders(bug: Option<Bug>) -> SagaModel {
    SagaModel {
        stock: 2,
        wants: vec![1, 2],
        faults: Faults {
            duplicates: FAULTS_TWO.0,
            failures: FAULTS_TWO.1,
            crashes: FAULTS_TWO.2,
            cancels: 1,
            races: FAULTS_TWO.3,
        },
        bug,
    }
}

/// (duplicates, failures, crashes, races) for two orders.
const FAULTS_TWO: (u8, u8, u8, u8) = (1, 1, 1, 0);

/// One order, with more of each fault.
fn one_order(bug: Option<Bug>) -> SagaModel {
    SagaModel {
        stock: 1,
        wants: vec![1],
        faults: Faults {
            duplicates: 2,
            failures: 2,
            crashes: 2,
            cancels: 1,
            races: 1,
        },
        bug,
    }
}

/// Explores every state of `model`, and says how many there were.
fn explore(name: &str, model: SagaModel) -> impl Checker<SagaModel> + use<> {
    let started = std::time::Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    println!(
        "model check, {name}: {} states ({} unique), depth {}, in {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker
}

#[test]
fn two_orders_sharing_stock_keep_every_promise() {
    explore("two orders", two_orders(None)).assert_properties();
}

#[test]
fn one_order_keeps_every_promise_through_more_faults() {
    explore("one order", one_order(None)).assert_properties();
}

#[test]
fn a_seeded_bug_is_caught() {
    let property = "the timeline agrees with the order";
    let checker = explore("inbox check removed", one_order(Some(Bug::NoInbox)));
    let found = checker.assert_any_discovery(property);
    let actions = found.into_actions();
    println!(
        "seeded bug (inbox check removed): \"{property}\" broken after {} steps: {actions:?}",
        actions.len(),
    );
}
