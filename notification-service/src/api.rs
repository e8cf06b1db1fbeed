//! The REST API: a user's notifications (that user or an admin).

use axum::extract::State;
use shared::auth::{Whose, WhoseParams};
use shared::error::{ApiError, ErrorBody};
use shared::http::{Listed, Page, PageParams};
use sqlx::PgPool;
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

/// A user's notifications by id.
#[utoipa::path(
    get, path = "/notifications", tag = "notifications", params(WhoseParams, PageParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of notifications", body = [Notification]),
        (status = 403, description = "Another user's, and not an admin", body = ErrorBody),
    )
)]
async fn list_notifications(
    State(state): State<ApiState>,
    Whose(user_id): Whose,
    page: Page,
) -> Result<Listed<Notification>, ApiError> {
    let notifications = store::list(&state.pool, Some(user_id), page).await?;
    Ok(Listed::new(notifications))
}
