//! The REST API: a user's notifications (that user or an admin).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use shared::auth::AuthUser;
use shared::error::{ApiError, ApiQuery, ErrorBody};
use shared::http::{PageParams, total_count_header};
use sqlx::PgPool;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::{self, Notification};

#[derive(Clone)]
pub struct ApiState {
    pub pool: PgPool,
}

/// What the OpenAPI document says the API is.
pub const DESCRIPTION: &str = "Notifications of order events.";

/// The API's routes (the shared router mounts them at `/` and `/api/v1`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list_notifications))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Whose notifications (default: the caller's; another user's needs admin).
    pub user_id: Option<i64>,
}

/// A user's notifications by id.
#[utoipa::path(
    get, path = "/notifications", tag = "notifications", params(NotificationQuery, PageParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of notifications", body = [Notification],
         headers(("X-Total-Count" = i64, description = "How many there are in all"))),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Another user's, and not an admin", body = ErrorBody),
    )
)]
async fn list_notifications(
    State(state): State<ApiState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<NotificationQuery>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<(HeaderMap, Json<Vec<Notification>>), ApiError> {
    let page = page.page()?;
    let user_id = query.user_id.unwrap_or(caller.id);
    caller.require_self_or_admin(user_id)?;
    let (items, total) = store::list(&state.pool, Some(user_id), page).await?;
    Ok((total_count_header(total), Json(items)))
}
