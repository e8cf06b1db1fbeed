//! The REST API (docs/contracts.md, "HTTP conventions"): place, read, list and cancel orders.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use shared::auth::{AuthUser, Whose, WhoseParams};
use shared::error::{ApiError, ApiJson, ApiQuery, ErrorBody, ErrorCode, IdPath};
use shared::http::{Listed, Page, PageParams};
use shared::id::{OrderId, ProductId, UserId};
use shared::stock::OrderLine;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::model::{IdempotencyKey, InvalidKey, OrderReason, OrderStatus, OrderView};
use crate::saga::{PlaceError, Saga};
use crate::store::Transition;
use crate::timeline::Timeline;

#[derive(Clone)]
pub struct ApiState {
    pub saga: Saga,
}

/// What the OpenAPI document says the API is.
pub const DESCRIPTION: &str = "Orders and their saga.";

/// The API's routes (the shared router mounts them at `/` and `/api/v1`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_timeline))
        .routes(routes!(cancel_order))
}

impl From<PlaceError> for ApiError {
    fn from(e: PlaceError) -> Self {
        let message = e.to_string();
        match e {
            PlaceError::Invalid(line) => ApiError::invalid_field(&line.field, line.message),
            PlaceError::KeyReused { order_id } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                message,
            )
            .with("order_id", order_id),
            PlaceError::InProgress { order_id } => {
                ApiError::conflict(ErrorCode::RequestInProgress, message)
                    .with("order_id", order_id)
                    .retry_after(1)
            }
            PlaceError::Insufficient {
                order_id,
                product_id,
                stock,
            } => ApiError::conflict(ErrorCode::InsufficientStock, message)
                .with("stock", stock)
                .with("product_id", product_id)
                .with("order_id", order_id),
            PlaceError::ProductNotFound { order_id, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ProductNotFound, message)
                    .with("order_id", order_id)
            }
            PlaceError::TotalTooLarge { order_id } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::OrderTotalTooLarge,
                message,
            )
            .with("order_id", order_id)
            .with(
                "max_total",
                serde_json::to_value(shared::money::MAX_ORDER_TOTAL).unwrap_or_default(),
            ),
            PlaceError::Unavailable { retry_after_secs } => {
                ApiError::unavailable(message).retry_after(retry_after_secs)
            }
            PlaceError::Overloaded { retry_after_secs } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                message,
            )
            .retry_after(retry_after_secs),
            PlaceError::Refused(_) => ApiError::internal(message),
            PlaceError::Db(e) => e.into(),
        }
    }
}

/// One line of a new order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ItemBody {
    pub product_id: ProductId,
    pub quantity: i32,
}

/// A new order: `{product_id, quantity}` or `{items: [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderBody {
    /// Optional; must be the caller (the token's subject).
    pub user_id: Option<UserId>,
    pub product_id: Option<ProductId>,
    pub quantity: Option<i32>,
    pub items: Option<Vec<ItemBody>>,
}

impl CreateOrderBody {
    /// The lines as sent, in either shape; [`Lines::new`](crate::model::Lines::new) checks them.
    pub fn lines(&self) -> Result<Vec<OrderLine>, ApiError> {
        match (&self.items, self.product_id, self.quantity) {
            (Some(items), None, None) => Ok(items
                .iter()
                .map(|i| OrderLine {
                    product_id: i.product_id,
                    quantity: i.quantity,
                })
                .collect()),
            (Some(_), _, _) => Err(ApiError::invalid_field(
                "items",
                "send either product_id and quantity, or items, not both",
            )),
            (None, Some(product_id), Some(quantity)) => Ok(vec![OrderLine {
                product_id,
                quantity,
            }]),
            (None, None, _) => Err(ApiError::invalid_field(
                "product_id",
                "product_id (with quantity) or items is required",
            )),
            (None, Some(_), None) => {
                Err(ApiError::invalid_field("quantity", "quantity is required"))
            }
        }
    }
}

/// Places an order: holds stock, then waits for payment (`pending`).
///
/// Send `Idempotency-Key` to make retries safe: the same key (with the same
/// items) returns the same order, never a second one.
#[utoipa::path(
    post, path = "/orders", tag = "orders", request_body = CreateOrderBody, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Placed (or the order of a repeated Idempotency-Key)", body = OrderView),
        (status = 403, description = "user_id is not the caller", body = ErrorBody),
        (status = 404, description = "A product does not exist", body = ErrorBody),
        (status = 409, description = "Product not available (with `stock`), or the same key still in progress", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for different items", body = ErrorBody),
        (status = 503, description = "The stock service is unavailable (`unavailable`), or too many orders are under way (`overloaded`); Retry-After says when to try again", body = ErrorBody),
    )
)]
async fn create_order(
    State(state): State<ApiState>,
    caller: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrderBody>,
) -> Result<(StatusCode, HeaderMap, Json<OrderView>), ApiError> {
    if let Some(user_id) = body.user_id
        && user_id != caller.id
    {
        return Err(
            ApiError::forbidden("user_id must be your own user id").with("field", "user_id")
        );
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| InvalidKey)
                .and_then(IdempotencyKey::parse)
                .map_err(|e| ApiError::invalid_field("Idempotency-Key", e.to_string()))?;
            Some(key)
        }
    };
    let lines = body.lines()?;
    let placed = state.saga.place(&caller, &lines, key.as_ref()).await?;
    let mut out = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orders/{}", placed.order.id)) {
        out.insert(header::LOCATION, location);
    }
    if placed.replayed {
        out.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((
        StatusCode::CREATED,
        out,
        Json(OrderView::from(&placed.order)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this status.
    #[param(inline)]
    pub status: Option<OrderStatus>,
}

/// The caller's orders, newest first.
#[utoipa::path(
    get, path = "/orders", tag = "orders", params(WhoseParams, OrderQuery, PageParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = [OrderView]),
        (status = 403, description = "Another user's orders", body = ErrorBody),
    )
)]
async fn list_orders(
    State(state): State<ApiState>,
    Whose(user_id): Whose,
    ApiQuery(query): ApiQuery<OrderQuery>,
    page: Page,
) -> Result<Listed<OrderView>, ApiError> {
    let orders = state
        .saga
        .store
        .list(Some(user_id), query.status, page)
        .await?;
    Ok(Listed::new(orders).map(|order| OrderView::from(&order)))
}

/// One order (its owner or an admin).
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])), params(IdPath),
    responses((status = 200, description = "The order", body = OrderView))
)]
async fn get_order(
    State(state): State<ApiState>,
    caller: AuthUser,
    IdPath(id): IdPath<OrderId>,
) -> Result<Json<OrderView>, ApiError> {
    let order = caller.owned(state.saga.store.get(id).await?, "order", id)?;
    Ok(Json(OrderView::from(&order)))
}

/// Every step of one order's saga, first to last, each with its time, its
/// cause (the request, an event, the recovery loop, the payment timeout, the
/// customer's cancel, the relay) and its trace id (its owner or an admin).
#[utoipa::path(
    get, path = "/orders/{id}/timeline", tag = "orders", security(("bearer" = [])), params(IdPath),
    responses(
        (status = 200, description = "The order's steps", body = Timeline),
        (status = 404, description = "No such order, or another user's", body = ErrorBody),
    )
)]
async fn order_timeline(
    State(state): State<ApiState>,
    caller: AuthUser,
    IdPath(id): IdPath<OrderId>,
) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(state.saga.timeline(&caller, id).await?))
}

/// Cancels a pending order and gives its stock back (its owner or an admin).
/// Cancelling a cancelled order again is harmless.
#[utoipa::path(
    post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), params(IdPath),
    responses(
        (status = 200, description = "The cancelled order", body = OrderView),
        (status = 409, description = "The order is no longer pending (with its `status`)", body = ErrorBody),
    )
)]
async fn cancel_order(
    State(state): State<ApiState>,
    caller: AuthUser,
    IdPath(id): IdPath<OrderId>,
) -> Result<Json<OrderView>, ApiError> {
    caller.owned(state.saga.store.get(id).await?, "order", id)?;
    match state.saga.cancel(id, OrderReason::UserCancelled).await? {
        Transition::Done(order) => Ok(Json(OrderView::from(&order))),
        Transition::Refused(order) if order.status == OrderStatus::Cancelled => {
            Ok(Json(OrderView::from(&order)))
        }
        Transition::Refused(order) => Err(ApiError::conflict(
            ErrorCode::NotCancellable,
            format!(
                "order {id} is {} and can no longer be cancelled",
                order.status.as_str()
            ),
        )
        .with("status", order.status.as_str())),
        // A cancel claims nothing of the order, so it can't be contradicted.
        Transition::Contradicted(why) => Err(ApiError::internal(why)),
        Transition::NotFound | Transition::AlreadyProcessed => {
            Err(ApiError::not_found(format!("order {id} not found")))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    /// The statuses a client may filter by and will read are the ones the
    /// service stores: the document's enum is `OrderStatus::NAMES`.
    #[test]
    fn the_document_names_every_order_status_where_it_is_read_and_filtered() {
        let (_, doc) = super::routes().split_for_parts();
        let doc = serde_json::to_value(doc).unwrap();
        let names = json!(super::OrderStatus::NAMES);
        assert_eq!(
            doc["components"]["schemas"]["OrderStatus"]["enum"], names,
            "{doc}"
        );
        let view = &doc["components"]["schemas"]["OrderView"]["properties"]["status"];
        assert_eq!(view["$ref"], "#/components/schemas/OrderStatus", "{view}");
        let params = doc["paths"]["/orders"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let status = params.iter().find(|p| p["name"] == "status").unwrap();
        assert_eq!(status["schema"]["enum"], names, "{status}");
        let names: Vec<&Value> = params.iter().map(|p| &p["name"]).collect();
        assert_eq!(names, ["user_id", "status", "limit", "offset"]);
    }
}
