//! The one API error type of every service, and the extractors that turn bad
//! requests into it.
//!
//! Every error leaves a service as `{"error": "<human message>", "code":
//! "<snake_case>", ...fields that help}` with the right status (docs/contracts.md, "HTTP conventions").
//! Handlers return `Result<_, ApiError>`; the extractors here ([`ApiJson`],
//! [`ApiQuery`], [`IdPath`]) replace axum's plain-text rejections so that bad
//! input is always a JSON 4xx that names the field, never a 500.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

crate::text_enum! {
    /// Every `code` an error of the API can carry: stable, snake_case, for
    /// clients to branch on (listed in docs/contracts.md).
    pub enum ErrorCode {
        // Any service.
        InvalidField = "invalid_field",
        InvalidQuery = "invalid_query",
        InvalidBody = "invalid_body",
        MalformedJson = "malformed_json",
        UnreadableBody = "unreadable_body",
        PayloadTooLarge = "payload_too_large",
        UnsupportedMediaType = "unsupported_media_type",
        MethodNotAllowed = "method_not_allowed",
        NotFound = "not_found",
        MissingToken = "missing_token",
        TokenExpired = "token_expired",
        InvalidToken = "invalid_token",
        TokenRevoked = "token_revoked",
        LastAdmin = "last_admin",
        Forbidden = "forbidden",
        RateLimited = "rate_limited",
        Unavailable = "unavailable",
        Internal = "internal",
        EmptyUpdate = "empty_update",
        // user-service.
        EmailTaken = "email_taken",
        InvalidCredentials = "invalid_credentials",
        WrongPassword = "wrong_password",
        // product-service.
        StaleVersion = "stale_version",
        PreconditionMismatch = "precondition_mismatch",
        // order-service.
        ProductNotFound = "product_not_found",
        InsufficientStock = "insufficient_stock",
        RequestInProgress = "request_in_progress",
        IdempotencyKeyReused = "idempotency_key_reused",
        NotCancellable = "not_cancellable",
        Overloaded = "overloaded",
        OrderTotalTooLarge = "order_total_too_large",
    }
}

/// An error as the client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code that clients can branch on.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
    /// Fields that help the client (`"field": "price"`, `"stock": 3`).
    pub extra: Map<String, Value>,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a field to the JSON body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 for one bad field: names the field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, message).with("field", field)
    }

    /// 400 for a request that is wrong as a whole.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credentials or bad credentials.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: the caller is known but may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404 for a missing resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 503 with `Retry-After`: a dependency is down; the request may be retried.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
        .retry_after(1)
    }

    /// 500: logs the cause, tells the client nothing internal.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal server error",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.message));
        body.insert("code".into(), Value::String(self.code.as_str().into()));
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"minishop\""),
            );
        }
        response
    }
}

/// Database failures: an unreachable, stalled or overloaded database is a
/// 503 the client may retry ([`crate::db::is_transient`]); anything else is
/// a bug and a 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_transient(&e) {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::unavailable("the database is unavailable, try again shortly")
        } else {
            ApiError::internal(e)
        }
    }
}

/// An API error as a gRPC status, for the services that answer both: the
/// HTTP status picks the code (401 UNAUTHENTICATED, 429 RESOURCE_EXHAUSTED
/// with `retry-after` metadata, 503 UNAVAILABLE, ...), the message is kept.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic::Code;
        let code = match e.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::CONFLICT => Code::FailedPrecondition,
            StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::Internal,
        };
        let mut status = tonic::Status::new(code, e.message);
        if let Some(seconds) = e.retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

/// The gRPC status of a database error: UNAVAILABLE when a retry can pass
/// ([`crate::db::is_transient`]), INTERNAL otherwise (logged; never UNKNOWN).
pub fn db_status(e: sqlx::Error) -> tonic::Status {
    if crate::db::is_transient(&e) {
        tonic::Status::unavailable(format!("database unavailable: {e}"))
    } else {
        tracing::error!(error = %e, "database error in gRPC call");
        tonic::Status::internal("internal database error")
    }
}

/// A JSON body that must be `application/json` (else 415), fit the body
/// limit (else 413) and deserialize as `T` (else 400 naming the field).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes =
            axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e: BytesRejection| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            ErrorCode::PayloadTooLarge,
                            "the request body is too large",
                        )
                    } else {
                        ApiError::bad_request(ErrorCode::UnreadableBody, e.body_text())
                    }
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes` as `T`, mapping every failure to a 400 that names the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(
                ErrorCode::MalformedJson,
                format!("malformed JSON: {inner}"),
            );
        }
        let message = strip_position(&inner.to_string());
        let field = missing_field_name(&message)
            .map(|name| join_path(&path, name))
            .unwrap_or(path);
        if field.is_empty() || field == "." {
            ApiError::bad_request(ErrorCode::InvalidBody, message)
        } else {
            ApiError::invalid_field(&field, format!("{field}: {message}"))
        }
    })?;
    // Trailing garbage after the value is bad input too.
    de.end().map_err(|e| {
        ApiError::bad_request(ErrorCode::MalformedJson, format!("malformed JSON: {e}"))
    })?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "." {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Query parameters as `T`; a bad one is a JSON 400 that names it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) =
            Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e: QueryRejection| {
                    let text = e.body_text();
                    let detail = text
                        .strip_prefix("Failed to deserialize query string: ")
                        .unwrap_or(&text)
                        .to_string();
                    let field = detail.split(':').next().unwrap_or("").trim().to_string();
                    let err = ApiError::bad_request(
                        ErrorCode::InvalidQuery,
                        format!("invalid query: {detail}"),
                    );
                    if field.is_empty() || field.contains(' ') {
                        err
                    } else {
                        err.with("field", field)
                    }
                })?;
        Ok(ApiQuery(value))
    }
}

/// A positive integer id from the path's `{id}`, as `T` (`i64`, or an id
/// type such as [`crate::id::OrderId`]); anything else is a 400, never a
/// 404 or 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPath<T = i64>(pub T);

impl<S: Send + Sync, T: TryFrom<i64>> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::invalid_field("id", "id must be a positive integer");
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => T::try_from(id).map(IdPath).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

/// Documents `{id}` as a path parameter: `params(IdPath)`.
impl<T> utoipa::IntoParams for IdPath<T> {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let id = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1));
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some("The id, a positive integer"))
                .schema(Some(id))
                .build(),
        ]
    }
}

/// The body of a JSON 404 for a path no route matches.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// The body of a JSON 405 for a known path with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        stock: i32,
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_json::<Body>(br#"{"name":"x","stock":"lots"}"#).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.extra["field"], "stock");
    }

    #[test]
    fn missing_field_names_the_field() {
        let err = parse_json::<Body>(br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(err.extra["field"], "stock");
    }

    #[test]
    fn malformed_json_and_trailing_garbage_are_400() {
        assert_eq!(
            parse_json::<Body>(b"{\"name\":").unwrap_err().code,
            ErrorCode::MalformedJson
        );
        assert_eq!(
            parse_json::<Body>(br#"{"name":"x","stock":1} x"#)
                .unwrap_err()
                .code,
            ErrorCode::MalformedJson
        );
    }
}

/// The shape of every error body, for the OpenAPI documents.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A sentence for humans.
    pub error: String,
    /// A stable snake_case code (`invalid_field`, `not_found`, `stale_version`, ...).
    pub code: String,
    /// For `invalid_field`: the field that was wrong.
    pub field: Option<String>,
}
