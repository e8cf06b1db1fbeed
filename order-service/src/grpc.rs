//! The gRPC `order.OrderService` (docs/contracts.md): the same rules as REST,
//! with the caller's Bearer token in the `authorization` metadata.

use std::sync::Arc;

use shared::auth::{AuthUser, Authority, JwtVerifier, authenticate};
use shared::error::db_status;
use shared::id::OrderId;
use shared::proto::order::order_service_server::OrderService;
use shared::proto::order::{
    CreateOrderRequest, GetOrderRequest, Order as ProtoOrder, OrderItem as ProtoItem,
    OrderTimeline, TimelineStep,
};
use shared::ratelimit::RateLimits;
use shared::stock::OrderLine;
use tonic::{Request, Response, Status};

use crate::model::IdempotencyKey;
use crate::model::Order;
use crate::saga::{PlaceError, Saga};

/// The gRPC face of the saga.
#[derive(Clone)]
pub struct OrderGrpc {
    pub saga: Saga,
    pub verifier: Arc<JwtVerifier>,
    /// The per-user write limit, shared with the REST API.
    pub limits: Arc<RateLimits>,
    /// Where an admin token's current role is asked, as for REST.
    pub authority: Option<Arc<dyn Authority>>,
}

impl From<PlaceError> for Status {
    fn from(e: PlaceError) -> Self {
        let message = e.to_string();
        match e {
            PlaceError::Invalid(line) => {
                Status::invalid_argument(format!("{}: {}", line.field, line.message))
            }
            PlaceError::KeyReused { .. } => Status::already_exists(message),
            PlaceError::InProgress { .. } => Status::aborted(message),
            PlaceError::Insufficient {
                product_id, stock, ..
            } => Status::failed_precondition(format!(
                "Product not available: product {product_id} has {stock} in stock"
            )),
            PlaceError::ProductNotFound { .. } => Status::not_found(message),
            PlaceError::TotalTooLarge { .. } => Status::out_of_range(message),
            PlaceError::Unavailable { .. } | PlaceError::Overloaded { .. } => {
                Status::unavailable(message)
            }
            PlaceError::Refused(_) => Status::internal(message),
            PlaceError::Db(e) => db_status(e),
        }
    }
}

fn to_proto(order: &Order) -> ProtoOrder {
    ProtoOrder {
        id: order.id.get(),
        user_id: order.user_id.get(),
        status: order.status.as_str().to_string(),
        total_price_cents: order.total_price.map_or(0, |m| m.cents()),
        items: order
            .items
            .iter()
            .map(|i| ProtoItem {
                product_id: i.product_id.get(),
                quantity: i.quantity,
                unit_price_cents: i.unit_price.map_or(0, |m| m.cents()),
            })
            .collect(),
        created_at: order.created_at.to_rfc3339(),
        updated_at: order.updated_at.to_rfc3339(),
    }
}

impl OrderGrpc {
    async fn caller<T>(&self, request: &Request<T>) -> Result<AuthUser, Status> {
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| Status::unauthenticated("malformed authorization metadata"))?,
            ),
        };
        Ok(authenticate(&self.verifier, self.authority.as_deref(), header).await?)
    }
}

#[tonic::async_trait]
impl OrderService for OrderGrpc {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<ProtoOrder>, Status> {
        let caller = self.caller(&request).await?;
        self.limits.check_write(&caller)?;
        let req = request.into_inner();
        let key = if req.idempotency_key.is_empty() {
            None
        } else {
            Some(
                IdempotencyKey::parse(&req.idempotency_key)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            )
        };
        let lines = OrderLine::all(&req.items)?;
        let placed = self.saga.place(&caller, &lines, key.as_ref()).await?;
        Ok(Response::new(to_proto(&placed.order)))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<ProtoOrder>, Status> {
        let caller = self.caller(&request).await?;
        let id = OrderId::new(request.into_inner().id)
            .map_err(|_| Status::invalid_argument("id must be a positive integer"))?;
        let found = self.saga.store.get(id).await.map_err(db_status)?;
        // Another user's order is as missing as one that does not exist.
        let order = caller.owned(found, "order", id)?;
        Ok(Response::new(to_proto(&order)))
    }

    async fn get_order_timeline(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<OrderTimeline>, Status> {
        let caller = self.caller(&request).await?;
        let id = OrderId::new(request.into_inner().id)
            .map_err(|_| Status::invalid_argument("id must be a positive integer"))?;
        let timeline = self.saga.timeline(&caller, id).await?;
        Ok(Response::new(OrderTimeline {
            order_id: timeline.order_id.get(),
            status: timeline.status.as_str().to_string(),
            steps: timeline
                .steps
                .into_iter()
                .map(|s| TimelineStep {
                    seq: s.seq,
                    step: s.step.as_str().to_string(),
                    at: s.at.to_rfc3339(),
                    cause: s.cause.as_str().to_string(),
                    event_id: s.event_id.map(|e| e.to_string()).unwrap_or_default(),
                    event_type: s.event_type.unwrap_or_default(),
                    trace_id: s.trace_id.unwrap_or_default(),
                    detail: s.detail.unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
