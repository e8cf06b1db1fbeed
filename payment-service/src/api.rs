//! The REST API: payments, for their owner or an admin.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use shared::auth::AuthUser;
use shared::error::{ApiError, ApiQuery, IdPath};
use shared::http::{Listed, Page, PageParams};
use shared::id::OrderId;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::{Payment, Store};

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
}

/// What the OpenAPI document says the API is.
pub const DESCRIPTION: &str = "Payments of orders.";

/// The API's routes (the shared router mounts them at `/` and `/api/v1`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_payments))
        .routes(routes!(get_payment))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentQuery {
    /// Only the payment of this order.
    pub order_id: Option<OrderId>,
}

/// Payments by id: an admin sees all, anyone else their own.
#[utoipa::path(
    get, path = "/payments", tag = "payments", params(PaymentQuery, PageParams), security(("bearer" = [])),
    responses((status = 200, description = "A page of payments", body = [Payment]))
)]
async fn list_payments(
    State(state): State<ApiState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<PaymentQuery>,
    page: Page,
) -> Result<Listed<Payment>, ApiError> {
    let found = state
        .store
        .list(query.order_id, caller.owner_filter(), page);
    Ok(Listed::new(found.await?))
}

/// One payment (its owner or an admin).
#[utoipa::path(
    get, path = "/payments/{id}", tag = "payments", security(("bearer" = [])), params(IdPath),
    responses((status = 200, description = "The payment", body = Payment))
)]
async fn get_payment(
    State(state): State<ApiState>,
    caller: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<Payment>, ApiError> {
    let payment = state.store.get(id).await?;
    Ok(Json(caller.owned(payment, "payment", id)?))
}
