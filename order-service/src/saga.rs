//! The orchestration (docs/saga.md).
//!
//! ```text
//! place:           insert PENDING -> ReserveStock -> tx{ held, total, outbox(order_created) }
//!                                    insufficient  -> REJECTED (409)
//! payment_success: tx{ inbox, PAID, outbox(order_confirmed) } -> CommitStock
//! payment_failed:  tx{ inbox, FAILED, outbox(order_cancelled) } -> ReleaseStock
//! cancel/timeout:  tx{ CANCELLED, outbox(order_cancelled) } -> ReleaseStock
//! ```
//!
//! Every step is a guarded transition ([`crate::store`]) and every stock call
//! is idempotent by order id, so a step may run twice — a redelivered event,
//! the recovery loop racing a request, two replicas — and still act once.
//! The stock calls after a transition are attempted at once and, if
//! product-service is down, by the recovery loop until they succeed.
//!
//! Admission: past `max_pending` orders under way, new orders are refused
//! with a 503 and `Retry-After` before anything is written. Without it a
//! saturated system accepts orders faster than it finishes them, and the
//! excess waits until the payment timeout cancels it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use saga::order::{Call, Caller, Change, Decision, Input, Outcome, Refusal, Reservation, decide};
use shared::auth::AuthUser;
use shared::id::{OrderId, ProductId};
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{Event, EventItem, EventPayload};
use shared::metrics::prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
};
use shared::money::Money;
use shared::proto::product::{ReservationStatus, ReserveStockResponse};
use shared::shutdown::CancellationToken;
use shared::stock::{OrderLine, Settlement, Shortfall};
use tonic::Code;

use crate::model::{IdempotencyKey, LineError, Lines, Order, OrderReason, OrderStatus, StockState};
use crate::product_client::{CallError, ProductClient};
use crate::store::{Inserted, Store, Transition};
use crate::timeline::{Cause, NewStep, Timeline};

/// How the saga paces itself.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// `PAYMENT_TIMEOUT_SECS`: a held order without a payment result after this is cancelled.
    pub payment_timeout: Duration,
    /// `RECOVERY_INTERVAL_MS`: how often the recovery loop looks for unfinished sagas.
    pub recovery_interval: Duration,
    /// `RECOVERY_GRACE_MS`: how long an order must be untouched before the
    /// loop takes it over from a request that may still be working on it.
    pub recovery_grace: Duration,
    /// `ORDER_MAX_PENDING`: orders under way (pending) past which new ones are refused.
    pub max_pending: i64,
}

/// The saga's metrics.
#[derive(Clone)]
pub struct SagaMetrics {
    /// `saga_outcomes_total{outcome}`: paid, failed, cancelled, rejected.
    pub outcomes: IntCounterVec,
    /// `saga_duration_seconds`: from order placed to terminal status.
    pub duration: Histogram,
    /// `orders_pending`: orders whose saga is under way.
    pub pending: IntGauge,
    /// `orders_pending_oldest_seconds`: how long the oldest of them has been pending.
    pub pending_oldest_seconds: Gauge,
    /// `orders_shed_total`: new orders refused because `max_pending` were under way.
    pub shed: IntCounter,
}

impl SagaMetrics {
    pub fn new(metrics: &shared::metrics::Metrics) -> Self {
        let outcomes = metrics.counter_vec(
            "saga_outcomes_total",
            "Orders reaching a terminal status, by status",
            &["outcome"],
        );
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "saga_duration_seconds",
                "Time from order placed to terminal status",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
        )
        .expect("static metric definition");
        metrics.register(duration.clone());
        Self {
            outcomes,
            duration,
            pending: metrics.int_gauge("orders_pending", "Orders whose saga is under way"),
            pending_oldest_seconds: metrics.gauge(
                "orders_pending_oldest_seconds",
                "How long the oldest pending order has been pending",
            ),
            shed: metrics.int_counter(
                "orders_shed_total",
                "New orders refused (503) because too many were under way",
            ),
        }
    }

    fn finished(&self, order: &Order) {
        self.outcomes
            .with_label_values(&[order.status.as_str()])
            .inc();
        let took = (chrono::Utc::now() - order.created_at)
            .to_std()
            .unwrap_or_default();
        self.duration.observe(took.as_secs_f64());
    }
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("{}", .0.message)]
    Invalid(LineError),
    #[error("this Idempotency-Key was used for a different order ({order_id})")]
    KeyReused { order_id: OrderId },
    #[error("an order with this Idempotency-Key is still being placed ({order_id})")]
    InProgress { order_id: OrderId },
    #[error("Product not available")]
    Insufficient {
        order_id: OrderId,
        product_id: ProductId,
        stock: i32,
    },
    #[error("a product of the order does not exist: {message}")]
    ProductNotFound { order_id: OrderId, message: String },
    #[error("{}", shared::money::TotalTooLarge)]
    TotalTooLarge { order_id: OrderId },
    #[error("the stock service is unavailable; try again shortly")]
    Unavailable { retry_after_secs: u64 },
    #[error("too many orders are being processed; try again shortly")]
    Overloaded { retry_after_secs: u64 },
    #[error("the stock service refused the order: {0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl PlaceError {
    /// The error a request gets for the saga's refusal of order `order_id`.
    fn from_refusal(order_id: OrderId, refusal: Refusal) -> Self {
        match refusal {
            Refusal::Insufficient { product_id, stock } => Self::Insufficient {
                order_id,
                product_id,
                stock,
            },
            Refusal::ProductNotFound(message) => Self::ProductNotFound { order_id, message },
            Refusal::TotalTooLarge => Self::TotalTooLarge { order_id },
            Refusal::Unavailable => Self::Unavailable {
                retry_after_secs: 5,
            },
            Refusal::Refused(message) => Self::Refused(message),
        }
    }
}

/// What the saga makes of ReserveStock's answer, or of its failure.
fn reservation(result: Result<ReserveStockResponse, CallError>) -> Reservation {
    let answer = match result {
        Ok(answer) => answer,
        Err(CallError::Refused(status)) => {
            return match status.code() {
                Code::NotFound => Reservation::ProductNotFound(status.message().to_string()),
                Code::OutOfRange => Reservation::TotalTooLarge,
                _ => Reservation::Refused(status.message().to_string()),
            };
        }
        Err(CallError::BreakerOpen) => return Reservation::Unavailable { sent: false },
        Err(CallError::Unavailable(_)) => return Reservation::Unavailable { sent: true },
    };
    match answer.status() {
        ReservationStatus::Reserved | ReservationStatus::Committed => Reservation::Held {
            // An item without a valid product id is no line of this order:
            // it leaves the lengths unequal, so nothing matches.
            items: answer
                .items
                .iter()
                .filter_map(|i| {
                    Some(EventItem {
                        product_id: ProductId::new(i.product_id).ok()?,
                        quantity: i.quantity,
                        unit_price: Money(i.unit_price_cents),
                    })
                })
                .collect(),
        },
        // The proto says 0 for an unknown short product.
        ReservationStatus::Insufficient => Reservation::Insufficient {
            product_id: ProductId::new(answer.short_product_id).ok(),
            available: answer.available_stock,
        },
        ReservationStatus::Released => Reservation::Released,
        // No status, or one this version does not know (prost reads an
        // unknown value as the default).
        ReservationStatus::Unspecified => Reservation::Unknown,
    }
}

/// A placed order; `replayed` when an idempotency key brought back an earlier one.
#[derive(Debug)]
pub struct Placed {
    pub order: Order,
    pub replayed: bool,
}

/// The orchestrator: cheap to clone, shared by REST, gRPC, the consumer and the recovery loop.
#[derive(Clone)]
pub struct Saga {
    pub store: Store,
    products: ProductClient,
    metrics: SagaMetrics,
    config: SagaConfig,
    /// Orders under way as last counted by the recovery loop, plus those
    /// this replica placed since: the admission check's estimate.
    pending: Arc<AtomicI64>,
}

impl Saga {
    pub fn new(
        store: Store,
        products: ProductClient,
        metrics: SagaMetrics,
        config: SagaConfig,
    ) -> Self {
        Self {
            store,
            products,
            metrics,
            config,
            pending: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Places an order for `customer`: pending, then stock held and
    /// `order_created` published, or rejected.
    pub async fn place(
        &self,
        customer: &AuthUser,
        requested: &[OrderLine],
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Placed, PlaceError> {
        let lines = Lines::new(requested).map_err(PlaceError::Invalid)?;
        self.admit()?;
        match self
            .store
            .insert(customer.id, &customer.email, &lines, idempotency_key)
            .await?
        {
            Inserted::Existing(order) => replay(order, &lines),
            Inserted::New(order) => {
                self.pending.fetch_add(1, Ordering::Relaxed);
                Ok(Placed {
                    order: self.reserve(order, Caller::Request).await?,
                    replayed: false,
                })
            }
        }
    }

    /// Refuses a new order while `max_pending` are under way. The estimate
    /// is the recovery loop's last count plus this replica's orders since,
    /// so the limit is soft: requests in flight at once, and other replicas
    /// within one recovery interval, may pass it by a few.
    fn admit(&self) -> Result<(), PlaceError> {
        if self.pending.load(Ordering::Relaxed) < self.config.max_pending {
            return Ok(());
        }
        self.metrics.shed.inc();
        Err(PlaceError::Overloaded {
            retry_after_secs: self.config.recovery_interval.as_secs().max(1),
        })
    }

    /// Asks product-service to hold the order's units and writes what the
    /// saga decides of the answer.
    async fn reserve(&self, order: Order, caller: Caller) -> Result<Order, PlaceError> {
        let lines = order.lines();
        let answer = reservation(self.products.reserve(order.id, &lines).await);
        if let Reservation::Unknown | Reservation::Refused(_) = &answer {
            tracing::error!(order_id = %order.id, ?answer, "product-service refused ReserveStock or gave no status this version knows");
        }
        let overdue = (chrono::Utc::now() - order.created_at)
            .to_std()
            .is_ok_and(|age| age > self.config.payment_timeout);
        let state = order.state();
        let decision = decide(
            &state,
            Input::Reserved {
                lines: &lines,
                answer,
                by: caller,
                overdue,
            },
        );
        let refusal = match &decision.outcome {
            Outcome::Rejected(refusal) => refusal.clone(),
            Outcome::Later => {
                return Err(PlaceError::Unavailable {
                    retry_after_secs: 5,
                });
            }
            Outcome::Done | Outcome::Contradicted(_) => {
                let Change::Hold { items, total } = decision.change else {
                    // Moved on meanwhile (a cancel, the recovery loop).
                    return Ok(self.current(order.id).await?);
                };
                let steps = NewStep::all_decided(&decision.steps, Cause::of(caller));
                let Some(announce) = decision.publish else {
                    return Err(PlaceError::Refused(
                        "the saga held stock without announcing it".into(),
                    ));
                };
                return match self
                    .store
                    .hold(order.id, &items, total, &steps, announce)
                    .await
                {
                    Ok(Some(held)) => {
                        tracing::info!(order_id = %order.id, %total, "stock held; order_created queued");
                        Ok(held)
                    }
                    // Someone else moved it on meanwhile (a cancel, the recovery loop).
                    Ok(None) => Ok(self.current(order.id).await?),
                    // Trying again fails the same way: end the order now
                    // and give its units back, rather than hold them and
                    // fail every round of the recovery loop on it.
                    Err(e) if !shared::db::is_transient(&e) => {
                        tracing::error!(order_id = %order.id, error = %e, "the held order could not be recorded: rejecting it, releasing its units");
                        let failed = decide(
                            &state,
                            Input::HoldFailed {
                                error: e.to_string(),
                            },
                        );
                        let Outcome::Rejected(refusal) = &failed.outcome else {
                            return Err(e.into());
                        };
                        let refusal = refusal.clone();
                        self.write_rejection(&order, failed, caller).await?;
                        Err(PlaceError::from_refusal(order.id, refusal))
                    }
                    Err(e) => Err(e.into()),
                };
            }
        };
        self.write_rejection(&order, decision, caller).await?;
        Err(PlaceError::from_refusal(order.id, refusal))
    }

    /// Writes a rejection the saga decided on, and settles the units it may
    /// hold if the saga says to now (else the recovery loop does).
    async fn write_rejection(
        &self,
        order: &Order,
        decision: Decision,
        caller: Caller,
    ) -> Result<(), sqlx::Error> {
        let Change::Reject {
            reason,
            short,
            stock,
            free_key,
        } = decision.change
        else {
            return Ok(());
        };
        let steps = NewStep::all_decided(&decision.steps, Cause::of(caller));
        if !self
            .store
            .reject(order.id, reason, short, stock, free_key, &steps)
            .await?
        {
            return Ok(());
        }
        self.metrics.finished(&Order {
            status: OrderStatus::Rejected,
            ..order.clone()
        });
        tracing::info!(order_id = %order.id, reason = reason.as_str(), "order rejected");
        if let Some(Call::Settle(how)) = decision.then {
            self.settle(&self.current(order.id).await?, how, Cause::of(caller))
                .await;
        }
        Ok(())
    }

    /// Order `id`'s timeline, for its owner or an admin; to anyone else it
    /// is as missing as an order that does not exist.
    pub async fn timeline(
        &self,
        caller: &AuthUser,
        id: OrderId,
    ) -> Result<Timeline, shared::error::ApiError> {
        let order = caller.owned(self.store.get(id).await?, "order", id)?;
        Ok(Timeline {
            order_id: id,
            status: order.status,
            steps: self.store.steps(id).await?,
        })
    }

    async fn current(&self, id: OrderId) -> Result<Order, sqlx::Error> {
        self.store.get(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// An event from the topic: a payment result pays (stock committed) or
    /// fails (stock released) a pending order, a refund is noted. Once per
    /// event; never moves a finished order.
    pub async fn on_event(&self, event: &Event) -> Result<(), HandlerError> {
        let (transition, then) = self
            .store
            .transition(event.order_id, Cause::Event(event), |order| {
                decide(order, Input::Event(event))
            })
            .await?;
        match transition {
            Transition::Done(order) => {
                self.metrics.finished(&order);
                tracing::info!(
                    order_id = %order.id,
                    status = order.status.as_str(),
                    "payment result applied"
                );
                if let Some(Call::Settle(how)) = then {
                    self.settle(&order, how, Cause::Event(event)).await;
                }
            }
            Transition::Refused(order) => tracing::info!(
                order_id = %order.id,
                status = order.status.as_str(),
                event_type = event.payload.event_type(),
                "event applied to a finished order, or changing nothing"
            ),
            Transition::AlreadyProcessed => {
                tracing::debug!(event_id = %event.event_id, "event already processed")
            }
            // Counted by the consumer as `outcome="refused"` (alert RefusedEvents).
            Transition::Contradicted(why) => return Err(HandlerError::Refused(why.into())),
            Transition::NotFound => {
                if let EventPayload::PaymentRefunded { .. } = event.payload {
                    tracing::warn!(order_id = %event.order_id, "a refund for an order this service does not have");
                    return Ok(());
                }
                return Err(HandlerError::Permanent(
                    format!("order {} does not exist", event.order_id).into(),
                ));
            }
        }
        Ok(())
    }

    /// Cancels a pending order (`reason`: user_cancelled or timeout) and gives its stock back.
    pub async fn cancel(
        &self,
        id: OrderId,
        reason: OrderReason,
    ) -> Result<Transition, sqlx::Error> {
        let cause = match reason {
            OrderReason::Timeout => Cause::PaymentTimeout,
            _ => Cause::CustomerCancel,
        };
        let (transition, then) = self
            .store
            .transition(id, cause, |order| decide(order, Input::Cancel(reason)))
            .await?;
        if let Transition::Done(order) = &transition {
            self.metrics.finished(order);
            tracing::info!(order_id = %id, reason = reason.as_str(), "order cancelled");
            if let Some(Call::Settle(how)) = then {
                self.settle(order, how, cause).await;
            }
        }
        Ok(transition)
    }

    /// Asks product-service to settle a finished order's units as `how`
    /// says, and records it. False when that failed: it is left to the
    /// recovery loop.
    pub async fn settle(&self, order: &Order, how: Settlement, cause: Cause<'_>) -> bool {
        let result = match self.products.settle(order.id, how).await {
            Ok(_) => {
                let decision = decide(&order.state(), Input::Settled(how));
                match decision.change {
                    Change::Stock { from, to } => self
                        .store
                        .set_stock(
                            order.id,
                            from,
                            to,
                            &NewStep::all_decided(&decision.steps, cause),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                tracing::debug!(order_id = %order.id, "stock settled");
                true
            }
            Err(e) => {
                tracing::warn!(order_id = %order.id, error = %e, "stock not settled yet; the recovery loop retries");
                false
            }
        }
    }

    /// One round of recovery: pending orders past the payment timeout are
    /// cancelled, then every other unfinished saga is moved on one step.
    /// Timeouts have a query of their own, and an order the loop could not
    /// finish waits out a growing backoff before it is tried again, so
    /// orders whose settle keeps failing never starve the rest. Returns how
    /// many orders it looked at.
    pub async fn recover_once(&self) -> Result<usize, sqlx::Error> {
        const BATCH: i64 = 100;
        let (pending, oldest) = self.store.pending().await?;
        self.pending.store(pending, Ordering::Relaxed);
        self.metrics.pending.set(pending);
        self.metrics.pending_oldest_seconds.set(oldest);
        let overdue = self
            .store
            .awaiting_payment(self.config.payment_timeout, BATCH)
            .await?;
        let mut count = overdue.len();
        for order in overdue {
            tracing::warn!(order_id = %order.id, "no payment result in time: cancelling");
            // One order that cannot be cancelled does not keep the others
            // waiting; it is found again next round.
            if let Err(e) = self.cancel(order.id, OrderReason::Timeout).await {
                tracing::warn!(order_id = %order.id, error = %e, "recovery: timed-out order not cancelled yet");
                self.store
                    .defer(
                        order.id,
                        self.config.recovery_interval,
                        RECOVERY_MAX_BACKOFF,
                    )
                    .await?;
            }
        }
        let orders = self
            .store
            .unsettled(self.config.recovery_grace, BATCH)
            .await?;
        count += orders.len();
        for order in orders {
            let id = order.id;
            let finished = match decide(&order.state(), Input::Recover).then {
                Some(Call::Reserve) => {
                    match self.reserve(order, Caller::Recovery).await {
                        Ok(order) => {
                            tracing::info!(
                                order_id = %id,
                                status = order.status.as_str(),
                                "recovered an interrupted order"
                            );
                            true
                        }
                        // Backed off on its own: the others go on.
                        Err(PlaceError::Db(e)) => {
                            tracing::warn!(order_id = %id, error = %e, "recovery: order not moved on");
                            false
                        }
                        Err(e @ PlaceError::Unavailable { .. }) => {
                            tracing::info!(order_id = %id, outcome = %e, "recovery: reservation not made yet");
                            false
                        }
                        Err(e) => {
                            tracing::info!(order_id = %id, outcome = %e, "recovery: order rejected");
                            true
                        }
                    }
                }
                Some(Call::Settle(how)) => self.settle(&order, how, Cause::Recovery).await,
                None => true,
            };
            if !finished {
                self.store
                    .defer(id, self.config.recovery_interval, RECOVERY_MAX_BACKOFF)
                    .await?;
            }
        }
        Ok(count)
    }

    /// Runs [`Self::recover_once`] every `recovery_interval` until `shutdown`.
    pub async fn run_recovery(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.recover_once().await {
                tracing::warn!(error = %e, "recovery round failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.recovery_interval) => {}
            }
        }
    }
}

/// The longest the recovery loop waits before it tries an order again that
/// it could not finish (the backoff starts at `recovery_interval`).
const RECOVERY_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The answer to a repeated idempotency key: the first order, as the first
/// request would have seen it.
fn replay(order: Order, lines: &Lines) -> Result<Placed, PlaceError> {
    if order.request_fingerprint.as_deref() != Some(lines.fingerprint().as_str()) {
        return Err(PlaceError::KeyReused { order_id: order.id });
    }
    match (order.status, order.stock, order.reason) {
        (OrderStatus::Pending, StockState::Unknown, _) => {
            Err(PlaceError::InProgress { order_id: order.id })
        }
        (OrderStatus::Rejected, _, Some(OrderReason::InsufficientStock)) => {
            let Shortfall {
                product_id,
                available: stock,
            } = order.short.unwrap_or(Shortfall {
                product_id: lines
                    .as_slice()
                    .first()
                    .map_or(ProductId::MIN, |l| l.product_id),
                available: 0,
            });
            Err(PlaceError::Insufficient {
                order_id: order.id,
                product_id,
                stock,
            })
        }
        (OrderStatus::Rejected, _, Some(OrderReason::TotalTooLarge)) => {
            Err(PlaceError::TotalTooLarge { order_id: order.id })
        }
        (OrderStatus::Rejected, _, Some(OrderReason::ProductNotFound)) => {
            Err(PlaceError::ProductNotFound {
                order_id: order.id,
                message: format!("order {} was rejected", order.id),
            })
        }
        _ => Ok(Placed {
            order,
            replayed: true,
        }),
    }
}

/// The order service's reaction to the saga's events (group `order-service`).
pub struct OrderHandler(pub Saga);

impl Handler for OrderHandler {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        self.0.on_event(event).await
    }
}
