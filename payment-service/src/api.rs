//! The REST API: payments, for their owner or an admin.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use shared::auth::AuthUser;
use shared::error::{ApiError, ApiQuery, ErrorBody, IdPath};
use shared::http::{PageParams, total_count_header};
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
    pub order_id: Option<i64>,
}

/// Payments by id: an admin sees all, anyone else their own.
#[utoipa::path(
    get, path = "/payments", tag = "payments", params(PaymentQuery, PageParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of payments", body = [Payment],
         headers(("X-Total-Count" = i64, description = "How many match in all"))),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
async fn list_payments(
    State(state): State<ApiState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<PaymentQuery>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<(HeaderMap, Json<Vec<Payment>>), ApiError> {
    let page = page.page()?;
    if let Some(order_id) = query.order_id
        && order_id <= 0
    {
        return Err(ApiError::invalid_field(
            "order_id",
            "order_id must be a positive integer",
        ));
    }
    let owner = if caller.is_admin() {
        None
    } else {
        Some(caller.id)
    };
    let (payments, total) = state.store.list(query.order_id, owner, page).await?;
    Ok((total_count_header(total), Json(payments)))
}

/// One payment (its owner or an admin).
#[utoipa::path(
    get, path = "/payments/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Payment id")),
    responses(
        (status = 200, description = "The payment", body = Payment),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Someone else's payment", body = ErrorBody),
        (status = 404, description = "No such payment", body = ErrorBody),
    )
)]
async fn get_payment(
    State(state): State<ApiState>,
    caller: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<Payment>, ApiError> {
    let payment = state
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("payment {id} not found")))?;
    caller.require_self_or_admin(payment.user_id)?;
    Ok(Json(payment))
}
