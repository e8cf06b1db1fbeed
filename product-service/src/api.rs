//! The REST API of the catalogue (docs/contracts.md, "HTTP conventions"): list, get (with ETag and
//! the cache), create, partial update with optimistic concurrency, delete.
//! Reads are public; writes need the admin role.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::auth::AdminUser;
use shared::error::{ApiError, ApiJson, ApiQuery, ErrorBody, ErrorCode, IdPath};
use shared::http::{Listed, Page, PageParams};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::ProductCache;
use crate::catalogue::UpdateError;
use crate::model::{self, NewProduct, Product, ProductPatch};
use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub cache: ProductCache,
}

/// What the OpenAPI document says the API is.
pub const DESCRIPTION: &str = "The catalogue.";

/// The API's routes (the shared router mounts them at `/` and `/api/v1`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, delete_product))
}

/// What to list: names that contain a text.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Only products whose name contains this (1 to 100 characters, any case).
    pub q: Option<String>,
}

/// Lists products by id, a page at a time, those whose name contains `q` if given.
#[utoipa::path(
    get, path = "/products", tag = "products", params(ProductQuery, PageParams),
    responses(
        (status = 200, description = "A page of products", body = [Product]),
        (status = 400, description = "`q` is empty or longer than 100 characters", body = ErrorBody),
    )
)]
async fn list_products(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ProductQuery>,
    page: Page,
) -> Result<Listed<Product>, ApiError> {
    let search = match query.q.as_deref().map(str::trim) {
        None => None,
        Some(q) if (1..=100).contains(&q.chars().count()) => Some(q),
        Some(_) => {
            return Err(ApiError::invalid_field("q", "must be 1 to 100 characters"));
        }
    };
    Ok(Listed::new(state.store.list(search, page).await?))
}

/// One product, from the cache when it can be; `If-None-Match` with the current ETag gives 304.
#[utoipa::path(
    get, path = "/products/{id}", tag = "products", params(IdPath),
    responses(
        (status = 200, description = "The product", body = Product,
         headers(("ETag" = String, description = "The product's version, for If-Match"))),
        (status = 304, description = "Not modified since the ETag sent"),
    )
)]
async fn get_product(
    State(state): State<ApiState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (version, body) = match state.cache.get(id).await {
        Some(hit) => hit,
        None => {
            let product = state
                .store
                .get(id)
                .await?
                .ok_or_else(|| product_not_found(id))?;
            let body = serde_json::to_string(&product).map_err(ApiError::internal)?;
            state.cache.fill(id, product.version, &body).await;
            (product.version, body)
        }
    };
    let etag = model::etag(version);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Body::from(body),
        )
            .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// Adds a product (admin).
#[utoipa::path(
    post, path = "/products", tag = "products", request_body = NewProduct,
    security(("bearer" = ["admin"])),
    responses((status = 201, description = "Created", body = Product))
)]
async fn create_product(
    State(state): State<ApiState>,
    AdminUser(admin): AdminUser,
    ApiJson(new): ApiJson<NewProduct>,
) -> Result<Response, ApiError> {
    new.validate()?;
    let product = state.store.create(&new).await?;
    tracing::info!(
        product_id = product.id,
        admin_id = %admin.id,
        "product created"
    );
    Ok(with_etag(StatusCode::CREATED, product, true))
}

/// Changes the fields sent, leaving the others alone (admin). With `If-Match`
/// (or `version` in the body) the change applies only to that version.
#[utoipa::path(
    put, path = "/products/{id}", tag = "products", request_body = ProductPatch,
    params(
        IdPath,
        ("If-Match" = Option<String>, Header, description = "The ETag last seen, e.g. \"v3\""),
    ),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Updated", body = Product),
        (status = 409, description = "Stale version; `current_version` says the current one", body = ErrorBody),
    )
)]
async fn update_product(
    State(state): State<ApiState>,
    AdminUser(admin): AdminUser,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<ProductPatch>,
) -> Result<Response, ApiError> {
    patch.validate()?;
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::invalid_field("If-Match", "If-Match must be ASCII"))?;
            model::parse_if_match(text)?
        }
    };
    let expected = match (if_match, patch.version) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                ErrorCode::PreconditionMismatch,
                format!("If-Match names version {a} but the body says version {b}"),
            ));
        }
        (a, b) => a.or(b),
    };
    let product = match state.store.update(id, &patch, expected).await {
        Ok(p) => p,
        Err(UpdateError::NotFound) => return Err(product_not_found(id)),
        Err(UpdateError::Stale { current }) => {
            return Err(ApiError::conflict(
                ErrorCode::StaleVersion,
                format!("the product changed since version {}: it is at version {current}; re-read it and retry", expected.unwrap_or_default()),
            )
            .with("current_version", current));
        }
        Err(UpdateError::Db(e)) => return Err(e.into()),
    };
    state.cache.invalidate(id, product.version).await;
    tracing::info!(
        product_id = id,
        admin_id = %admin.id,
        version = product.version,
        "product updated"
    );
    Ok(with_etag(StatusCode::OK, product, false))
}

/// Removes a product from the catalogue (admin).
#[utoipa::path(
    delete, path = "/products/{id}", tag = "products", params(IdPath),
    security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted"))
)]
async fn delete_product(
    State(state): State<ApiState>,
    AdminUser(admin): AdminUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete(id)
        .await?
        .ok_or_else(|| product_not_found(id))?;
    state.cache.invalidate_deleted(id).await;
    tracing::info!(product_id = id, admin_id = %admin.id, "product deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn product_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("product {id} not found"))
}

fn with_etag(status: StatusCode, product: Product, location: bool) -> Response {
    let etag = model::etag(product.version);
    let id = product.id;
    let mut response = (status, Json(product)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    if location && let Ok(value) = HeaderValue::from_str(&format!("/api/v1/products/{id}")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
