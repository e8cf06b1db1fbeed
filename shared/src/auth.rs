//! JWT authentication: tokens are signed by user-service with its Ed25519
//! private key; every other service verifies them with the public key only.
//!
//! Verification pins the algorithm to EdDSA, so `alg: none` and HS256 tokens
//! "signed" with the public key (algorithm confusion) are rejected before any
//! signature check, and it requires `exp`, `iat`, `iss`, `aud` and `sub`.
//! Handlers take an [`AuthUser`] (any valid token) or an [`AdminUser`]
//! (role admin, else 403) as an extractor.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::id::UserId;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Anyone who registered.
    Customer,
    /// Manages the catalogue and sees every order.
    Admin,
}

impl Role {
    /// The role as it appears in tokens and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

/// The claims of a minishop token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string per RFC 7519.
    pub sub: String,
    pub email: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// The user's token version when it was signed: a role or password
    /// change bumps the user's, and older tokens are refused where the
    /// version is checked ([`Authority`]). Absent (0) in older tokens.
    #[serde(default)]
    pub ver: i64,
    /// The token's own id, so that it alone can be revoked (`POST
    /// /logout`). Absent in older tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<uuid::Uuid>,
}

/// Why a token was refused; each becomes a 401 with its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("malformed Authorization header: expected Bearer <token>")]
    MalformedHeader,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has the wrong issuer")]
    WrongIssuer,
    #[error("the token has the wrong audience")]
    WrongAudience,
    #[error("the token's signature algorithm is not accepted")]
    WrongAlgorithm,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token is malformed")]
    Malformed,
    #[error(
        "the token was revoked (the role or the password changed since it was issued): log in again"
    )]
    Revoked,
}

impl AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::MissingToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Revoked => ErrorCode::TokenRevoked,
            _ => ErrorCode::InvalidToken,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::unauthorized(e.code(), e.to_string())
    }
}

/// A JWT key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWT {which} key is not an Ed25519 PEM key")]
    NotEd25519 {
        /// `public` or `private`.
        which: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("the public key PEM is not base64")]
    NotBase64(#[source] base64::DecodeError),
    #[error("the public key is not an Ed25519 key")]
    NotEd25519Spki,
}

/// Checks tokens with the user service's public key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for Ed25519 tokens from `issuer` meant for `audience`.
    pub fn from_public_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let key =
            DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|source| KeyError::NotEd25519 {
                which: "public",
                source,
            })?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    /// The verifier for a [`crate::config::JwtConfig`].
    pub fn from_config(config: &crate::config::JwtConfig) -> Result<Self, KeyError> {
        Self::from_public_pem(&config.public_key_pem, &config.issuer, &config.audience)
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed,
            })
    }

    /// The user behind an `Authorization` header value.
    pub fn authenticate(&self, header_value: Option<&str>) -> Result<AuthUser, AuthError> {
        let value = header_value.ok_or(AuthError::Missing)?;
        let token = bearer_token(value).ok_or(AuthError::MalformedHeader)?;
        let claims = self.verify(token)?;
        let id = claims
            .sub
            .parse::<i64>()
            .ok()
            .and_then(|id| UserId::new(id).ok())
            .ok_or(AuthError::Malformed)?;
        Ok(AuthUser {
            id,
            email: claims.email,
            role: claims.role,
            token_version: claims.ver,
            token_id: claims.jti,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer_token(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The caller behind an `Authorization` value, as it is now: a valid token
/// (`verifier`), and the current role where an `authority` is asked. The
/// one way REST (the [`AuthUser`] extractor) and gRPC authenticate.
pub async fn authenticate(
    verifier: &JwtVerifier,
    authority: Option<&dyn Authority>,
    header: Option<&str>,
) -> Result<AuthUser, ApiError> {
    let user = verifier.authenticate(header)?;
    match authority {
        Some(authority) => {
            let token = header.and_then(bearer_token).unwrap_or_default();
            authority.current(token, user).await
        }
        None => Ok(user),
    }
}

/// What a token's user may do now: the role and token version kept in
/// user-service's database, not the ones the token was signed with
/// (docs/contracts.md, "Authority"). A demoted admin's old token, or one
/// signed before a password change, is refused or downgraded.
pub trait Authority: Send + Sync + 'static {
    /// `user` (from a valid `token`) as it is now: its current role, or a
    /// 401 `token_revoked` when the token is older than the user's version.
    fn current<'a>(&'a self, token: &'a str, user: AuthUser) -> Current<'a>;
}

/// What [`Authority::current`] answers, in time.
pub type Current<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AuthUser, ApiError>> + Send + 'a>>;

/// Signs tokens; only user-service holds the private key (tests use a test key).
pub struct JwtSigner {
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
    /// The `kid` header: which published key verifies the token (key rotation).
    kid: Option<String>,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A signer from an Ed25519 private key in PEM.
    pub fn from_private_pem(
        pem: &str,
        issuer: &str,
        audience: &str,
        ttl_seconds: i64,
    ) -> Result<Self, KeyError> {
        let key =
            EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|source| KeyError::NotEd25519 {
                which: "private",
                source,
            })?;
        Ok(Self {
            key,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_seconds,
            kid: None,
        })
    }

    /// Names the key in every token's `kid` header.
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// A token for this user, valid from now for the configured lifetime.
    /// `version` is the user's token version now (see [`Claims::ver`]).
    pub fn sign(
        &self,
        user_id: i64,
        email: &str,
        role: Role,
        version: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        self.sign_claims(&Claims {
            sub: user_id.to_string(),
            email: email.into(),
            role,
            iat: now,
            exp: now + self.ttl_seconds,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            ver: version,
            jti: Some(uuid::Uuid::new_v4()),
        })
    }

    /// Signs arbitrary claims (tests use it to build expired or foreign tokens).
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The JWK (RFC 8037, `kty: OKP`) of an Ed25519 public key in PEM, for
/// `/.well-known/jwks.json`.
pub fn jwk_from_public_pem(pem: &str, kid: &str) -> Result<serde_json::Value, KeyError> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(KeyError::NotBase64)?;
    let x = der
        .strip_prefix(&ED25519_SPKI_PREFIX)
        .filter(|x| x.len() == 32)
        .ok_or(KeyError::NotEd25519Spki)?;
    Ok(serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x),
    }))
}

/// The caller, from a valid Bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: UserId,
    pub email: String,
    /// The role: the token's, or the current one where an [`Authority`]
    /// checked it.
    pub role: Role,
    /// The token's version (its `ver` claim).
    pub token_version: i64,
    /// The token's id (its `jti` claim), if it has one.
    pub token_id: Option<uuid::Uuid>,
}

impl AuthUser {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller is an admin or the user `owner_id`.
    pub fn require_self_or_admin(&self, owner_id: UserId) -> Result<(), ApiError> {
        if self.is_admin() || self.id == owner_id {
            Ok(())
        } else {
            Err(ApiError::forbidden("this belongs to another user"))
        }
    }

    /// Whose items a list shows: the user asked for (`?user_id=`), by
    /// default the caller; another user's needs an admin (else 403).
    pub fn whose(&self, requested: Option<UserId>) -> Result<UserId, ApiError> {
        let user_id = requested.unwrap_or(self.id);
        self.require_self_or_admin(user_id)?;
        Ok(user_id)
    }

    /// The owner a query is limited to: none for an admin, who sees all.
    pub fn owner_filter(&self) -> Option<UserId> {
        (!self.is_admin()).then_some(self.id)
    }

    /// One item as the caller may see it: 404 naming `what` and `id` when
    /// there is none, and the same 404 when it is another user's and the
    /// caller is no admin (so ids can't be probed for what exists).
    pub fn owned<T: Owned>(
        &self,
        found: Option<T>,
        what: &str,
        id: impl std::fmt::Display,
    ) -> Result<T, ApiError> {
        match found {
            Some(item) if self.is_admin() || item.owner_id() == self.id => Ok(item),
            _ => Err(ApiError::not_found(format!("{what} {id} not found"))),
        }
    }
}

/// Something that belongs to one user (an order, a payment, a notification).
pub trait Owned {
    /// The user it belongs to.
    fn owner_id(&self) -> UserId;
}

/// The verifier comes from the request's extensions, where the service's
/// router puts it ([`crate::http::ServiceRouter::verifier`]), and so does
/// the [`Authority`] that says what the token's user may do now.
impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(verifier) = parts.extensions.get::<Arc<JwtVerifier>>().cloned() else {
            return Err(ApiError::internal(
                "no JwtVerifier in the request's extensions: the router was built without one",
            ));
        };
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| AuthError::MalformedHeader)?),
        };
        let authority = parts.extensions.get::<Arc<dyn Authority>>().cloned();
        let user = authenticate(&verifier, authority.as_deref(), header).await?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// Whose items a list shows, with the caller's right to see them: the user
/// `?user_id=` names, by default the caller; another user's needs an admin
/// (else 403), and no valid token is a 401. Document it with
/// `params(WhoseParams)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whose(pub UserId);

/// The query parameter [`Whose`] reads.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhoseParams {
    /// Whose items (default: the caller's; another user's needs admin).
    pub user_id: Option<UserId>,
}

impl<S: Send + Sync> FromRequestParts<S> for Whose {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        let crate::error::ApiQuery(params) =
            crate::error::ApiQuery::<WhoseParams>::from_request_parts(parts, state).await?;
        caller.whose(params.user_id).map(Whose)
    }
}

/// The caller, who must be an admin: 401 without a valid token, 403 for a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.is_admin() {
            Ok(AdminUser(user))
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = include_str!("../testdata/test_jwt_private.pem");
    const PUBLIC: &str = include_str!("../testdata/test_jwt_public.pem");

    fn pair() -> (JwtSigner, JwtVerifier) {
        (
            JwtSigner::from_private_pem(PRIVATE, "iss", "aud", 60).unwrap(),
            JwtVerifier::from_public_pem(PUBLIC, "iss", "aud").unwrap(),
        )
    }

    #[test]
    fn a_signed_token_verifies_and_names_the_user() {
        let (signer, verifier) = pair();
        let token = signer.sign(7, "a@b.c", Role::Admin, 0).unwrap();
        let user = verifier
            .authenticate(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(
            user,
            AuthUser {
                id: UserId::new(7).unwrap(),
                email: "a@b.c".into(),
                role: Role::Admin,
                token_version: 0,
                token_id: user.token_id,
            }
        );
        assert!(user.token_id.is_some(), "every token has an id of its own");
    }

    #[test]
    fn expired_wrong_issuer_and_tampered_tokens_are_refused() {
        let (signer, verifier) = pair();
        let now = chrono::Utc::now().timestamp();
        let base = Claims {
            sub: "1".into(),
            email: "x@y.z".into(),
            role: Role::Customer,
            iat: now - 1000,
            exp: now - 500,
            iss: "iss".into(),
            aud: "aud".into(),
            ver: 0,
            jti: None,
        };
        let expired = signer.sign_claims(&base).unwrap();
        assert_eq!(verifier.verify(&expired).unwrap_err(), AuthError::Expired);

        let foreign = signer
            .sign_claims(&Claims {
                exp: now + 500,
                iss: "other".into(),
                ..base.clone()
            })
            .unwrap();
        assert_eq!(
            verifier.verify(&foreign).unwrap_err(),
            AuthError::WrongIssuer
        );

        let good = signer.sign(1, "x@y.z", Role::Customer, 0).unwrap();
        let (signed, signature) = good.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
        assert_eq!(
            verifier.verify(&tampered).unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn the_jwk_of_the_public_key_verifies_tokens() {
        let (signer, _) = pair();
        let token = signer.sign(3, "j@w.k", Role::Customer, 0).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(jwk_from_public_pem(PUBLIC, "k1").unwrap()).unwrap();
        let key = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["aud"]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_ok());
    }

    #[test]
    fn headers_without_bearer_are_refused() {
        let (_, verifier) = pair();
        assert_eq!(verifier.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            verifier.authenticate(Some("Basic abc")).unwrap_err(),
            AuthError::MalformedHeader
        );
    }
}
