//! The REST API: a user's notifications (that user or an admin).

use axum::extract::State;
use serde::Deserialize;
use shared::auth::AuthUser;
use shared::error::{ApiError, ApiQuery, ErrorBody};
use shared::http::{Listed, PageParams};
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
    pub user_id: Option<shared::id::UserId>,
}

/// A user's notifications by id.
#[utoipa::path(
    get, path = "/notifications", tag = "notifications", params(NotificationQuery, PageParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of notifications", body = [Notification]),
        (status = 403, description = "Another user's, and not an admin", body = ErrorBody),
    )
)]
async fn list_notifications(
    State(state): State<ApiState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<NotificationQuery>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Listed<Notification>, ApiError> {
    let page = page.page()?;
    let user_id = caller.whose(query.user_id)?;
    Ok(Listed::new(
        store::list(&state.pool, Some(user_id), page).await?,
    ))
}
