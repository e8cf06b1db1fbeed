//! The REST API: register, login, profile, role changes, and the JWKS that
//! lets every other service verify tokens with the public key only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, middleware};
use serde::{Deserialize, Serialize};
use shared::auth::{AdminUser, AuthUser, JwtSigner, Role};
use shared::error::{ApiError, ApiJson, ErrorBody, ErrorCode, IdPath};
use shared::ratelimit::{ClientIp, RateLimits, limit_per_ip, note_client_ip};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::email::Email;
use crate::lockout::Lockout;
use crate::passwords::Passwords;
use crate::store::{Store, StoreError, User};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub passwords: Passwords,
    /// Limits password checks per account and per address.
    pub lockout: Lockout,
    pub signer: Arc<JwtSigner>,
    /// `{"keys": [...]}`, computed once at start-up.
    pub jwks: Arc<serde_json::Value>,
    pub token_ttl_seconds: i64,
}

/// What the OpenAPI document says the API is.
pub const DESCRIPTION: &str = "Accounts and tokens.";

/// The API's routes; `/register` and `/login` are limited per client IP.
pub fn routes(limits: Arc<RateLimits>) -> OpenApiRouter<ApiState> {
    let credentials = OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .route_layer(middleware::from_fn_with_state(limits.clone(), limit_per_ip));
    OpenApiRouter::new()
        .merge(credentials)
        .routes(routes!(get_profile, update_profile))
        .routes(routes!(session))
        .routes(routes!(logout))
        .routes(routes!(set_role))
        .routes(routes!(jwks))
        // The password checks count per client address.
        .route_layer(middleware::from_fn_with_state(limits, note_client_ip))
}

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;
pub const MAX_NAME: usize = 100;

fn validate_password(field: &str, password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must be {MIN_PASSWORD} to {MAX_PASSWORD} characters (got {n})"),
        ));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > MAX_NAME || name.contains('\0') {
        return Err(ApiError::invalid_field(
            "name",
            format!("name must be 1 to {MAX_NAME} characters and not blank"),
        ));
    }
    Ok(())
}

/// `POST /register`: `name` or (for older clients) `username`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub name: Option<String>,
    /// Older clients' name for `name`.
    pub username: Option<String>,
    pub email: String,
    /// 8 to 128 characters.
    pub password: String,
}

/// A registration that passed validation.
#[derive(Debug)]
pub struct Registration<'a> {
    pub name: &'a str,
    pub email: Email,
    pub password: &'a str,
}

impl RegisterRequest {
    /// Checks every field, in the order the client reads them.
    pub fn validate(&self) -> Result<Registration<'_>, ApiError> {
        let name = match (&self.name, &self.username) {
            (Some(name), _) | (None, Some(name)) => name,
            (None, None) => return Err(ApiError::invalid_field("name", "name is required")),
        };
        validate_name(name)?;
        let email = Email::parse(&self.email)?;
        validate_password("password", &self.password)?;
        Ok(Registration {
            name,
            email,
            password: &self.password,
        })
    }
}

/// Creates a customer account.
#[utoipa::path(
    post, path = "/register", tag = "users", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = User),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    )
)]
async fn register(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let valid = req.validate()?;
    let hash = state.passwords.hash(valid.password.to_string()).await?;
    let user = state
        .store
        .create(valid.name, &valid.email, &hash)
        .await
        .map_err(|e| match e {
            StoreError::DuplicateEmail => {
                ApiError::conflict(ErrorCode::EmailTaken, "this email is already registered")
                    .with("field", "email")
            }
            StoreError::NotFound | StoreError::LastAdmin => {
                ApiError::internal("insert returned no row")
            }
            StoreError::Db(e) => e.into(),
        })?;
    tracing::info!(user_id = user.id, "user registered");
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// A JWT for `Authorization: Bearer <token>`.
    pub token: String,
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub user: User,
}

/// Exchanges email and password for a token. A wrong password and an
/// unknown email get the same answer, in about the same time; too many
/// wrong ones for an account or from an address are a 429 before any
/// check (`crate::lockout`).
#[utoipa::path(
    post, path = "/login", tag = "users", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or failed ones for this account", body = ErrorBody),
    )
)]
async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let refused =
        || ApiError::unauthorized(ErrorCode::InvalidCredentials, "invalid email or password");
    let email = Email::parse(&req.email);
    // A malformed email is counted under its text as given.
    let account = email.as_ref().map_or_else(
        |_| req.email.trim().to_lowercase(),
        |e| e.as_str().to_owned(),
    );
    let attempt = state.lockout.attempt(&account, ip)?;
    // A malformed email can't belong to anyone; still spend the hashing time.
    let found = match &email {
        Ok(email) => state.store.by_email(email).await?,
        Err(_) => None,
    };
    let (user, hash) = match found {
        Some(c) => (Some((c.user, c.token_version)), Some(c.password_hash)),
        None => (None, None),
    };
    if !state.passwords.verify(req.password, hash).await? {
        attempt.failed();
        return Err(refused());
    }
    attempt.succeeded();
    let (user, version) = user.ok_or_else(refused)?;
    let token = state
        .signer
        .sign(user.id, &user.email, user.role, version)
        .map_err(ApiError::internal)?;
    Ok(Json(LoginResponse {
        token,
        token_type: "Bearer",
        expires_in: state.token_ttl_seconds,
        user,
    }))
}

/// What the caller's token may do now: its user, current role and token
/// version. Other services ask this of an admin's token
/// (docs/contracts.md, "Authority"); a revoked token is a 401.
#[utoipa::path(
    get, path = "/session", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The token is current", body = Session))
)]
async fn session(caller: AuthUser) -> Json<Session> {
    Json(Session {
        user_id: caller.id.get(),
        role: caller.role,
        token_version: caller.token_version,
    })
}

/// Ends the caller's token now, at every service: user-service refuses it
/// at once, and the others within `SESSION_CACHE_MS` (5 s), as after a
/// password change. Other tokens of the user stay good (a token from before
/// tokens had ids ends them all). Again with the same token: a 401.
#[utoipa::path(
    post, path = "/logout", tag = "users", security(("bearer" = [])),
    responses((status = 204, description = "The token is revoked"))
)]
async fn logout(State(state): State<ApiState>, caller: AuthUser) -> Result<StatusCode, ApiError> {
    match caller.token_id {
        // It expires no later than a token signed now would.
        Some(jti) => {
            let expires_at =
                chrono::Utc::now() + chrono::Duration::seconds(state.token_ttl_seconds);
            state.store.revoke(jti, caller.id.get(), expires_at).await?;
        }
        None => state.store.revoke_all(caller.id.get()).await?,
    }
    tracing::info!(user_id = %caller.id, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /session`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub user_id: i64,
    /// The role now (which may differ from the token's claim).
    pub role: Role,
    pub token_version: i64,
}

/// The caller's account, read from the database.
#[utoipa::path(
    get, path = "/profile", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
    )
)]
async fn get_profile(
    State(state): State<ApiState>,
    caller: AuthUser,
) -> Result<Json<User>, ApiError> {
    state
        .store
        .by_id(caller.id.get())
        .await?
        .map(|c| Json(c.user))
        .ok_or_else(|| ApiError::not_found("this account no longer exists"))
}

/// `PUT /profile`: a new name and/or a new password (which needs the current one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

impl ProfileUpdate {
    /// Checks the fields on their own, before the account is looked up
    /// (whether `current_password` is right needs the account).
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.name.is_none() && self.password.is_none() {
            return Err(ApiError::bad_request(
                ErrorCode::EmptyUpdate,
                "nothing to update: send name and/or password",
            ));
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if let Some(password) = &self.password {
            validate_password("password", password)?;
            if self.current_password.is_none() {
                return Err(ApiError::invalid_field(
                    "current_password",
                    "current_password is required to change the password",
                ));
            }
        }
        Ok(())
    }
}

/// Changes the caller's name or password.
#[utoipa::path(
    put, path = "/profile", tag = "users", request_body = ProfileUpdate, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 403, description = "current_password is wrong", body = ErrorBody),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
        (status = 429, description = "Too many failed password checks for this account or from this address", body = ErrorBody),
    )
)]
async fn update_profile(
    State(state): State<ApiState>,
    caller: AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> Result<Json<User>, ApiError> {
    req.validate()?;
    let current = state
        .store
        .by_id(caller.id.get())
        .await?
        .ok_or_else(|| ApiError::not_found("this account no longer exists"))?;
    let new_hash = match req.password {
        None => None,
        Some(password) => {
            // validate() refused a new password without current_password;
            // were it missing, an empty one fails the check below anyway.
            let given = req.current_password.unwrap_or_default();
            // Counted with the logins of the same account.
            let attempt = state.lockout.attempt(current.user.email.as_str(), ip)?;
            if !state
                .passwords
                .verify(given, Some(current.password_hash))
                .await?
            {
                attempt.failed();
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::WrongPassword,
                    "current_password is wrong",
                )
                .with("field", "current_password"));
            }
            attempt.succeeded();
            Some(state.passwords.hash(password).await?)
        }
    };
    let user = state
        .store
        .update_profile(caller.id.get(), req.name.as_deref(), new_hash.as_deref())
        .await
        .map_err(store_error)?;
    Ok(Json(user))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// `customer` or `admin`.
    pub role: Role,
}

/// Changes a user's role (admin only). It shows in the user's next token.
#[utoipa::path(
    put, path = "/users/{id}/role", tag = "users", request_body = RoleUpdate, security(("bearer" = ["admin"])), params(IdPath),
    responses((status = 200, description = "Updated", body = User))
)]
async fn set_role(
    State(state): State<ApiState>,
    AdminUser(admin): AdminUser,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<RoleUpdate>,
) -> Result<Json<User>, ApiError> {
    let user = state
        .store
        .set_role(id, req.role)
        .await
        .map_err(store_error)?;
    tracing::info!(
        user_id = id,
        admin_id = %admin.id,
        role = req.role.as_str(),
        "role changed"
    );
    Ok(Json(user))
}

/// The public key(s) tokens are signed with, as a JWK Set.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "users",
    responses((status = 200, description = "JWK Set", body = Object))
)]
async fn jwks(State(state): State<ApiState>) -> Response {
    let mut response = Json(state.jwks.as_ref().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("no such user"),
        StoreError::DuplicateEmail => {
            ApiError::conflict(ErrorCode::EmailTaken, "this email is already registered")
        }
        e @ StoreError::LastAdmin => ApiError::conflict(ErrorCode::LastAdmin, e.to_string()),
        StoreError::Db(e) => e.into(),
    }
}
