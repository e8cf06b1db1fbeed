//! Sessions done in the browser's cookies, and what keeps them safe
//! (docs/security.md, "The web front"):
//! - the user's token lives in `minishop_session`, HttpOnly (no script
//!   reads it), SameSite=Strict (no other site's page sends it), Secure
//!   where web is served over TLS (`COOKIE_SECURE`); web verifies it on
//!   every request and user-service says whether it still holds, as for
//!   every service;
//! - every form carries a CSRF token equal to the random `minishop_csrf`
//!   cookie (double submit), and a POST from another site (by `Origin` or
//!   `Sec-Fetch-Site`) is refused before its form is read;
//! - every answer has a Content-Security-Policy that allows only this
//!   origin's scripts, styles and connections, and no framing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use serde::de::DeserializeOwned;
use shared::auth::{AuthUser, Authority, JwtVerifier, Role};
use shared::ratelimit::ForwardedFor;
use subtle::ConstantTimeEq;

use crate::cart::{self, Cart};
use crate::pages::PageError;

pub const SESSION_COOKIE: &str = "minishop_session";
pub const CSRF_COOKIE: &str = "minishop_csrf";
/// The form field that must equal the CSRF cookie.
pub const CSRF_FIELD: &str = "csrf";
/// The most a form may send.
const FORM_LIMIT: usize = 16 * 1024;

/// Only this origin's scripts, styles, images and connections; no plugin,
/// no framing, forms posted only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What web needs to know a visitor.
#[derive(Clone)]
pub struct Sessions {
    pub verifier: Arc<JwtVerifier>,
    /// user-service, asked whether a token still holds and what role it has now.
    pub authority: Option<Arc<dyn Authority>>,
    /// Mark cookies Secure (`COOKIE_SECURE`).
    pub secure: bool,
    /// Who says where a visitor is (`TRUST_FORWARDED_FOR`).
    pub forwarded_for: ForwardedFor,
}

impl Sessions {
    /// A cookie as web sets them all: for this browser session only (a
    /// session's token expires on its own; web then removes it).
    pub fn cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .path("/")
            .build()
    }

    /// The cookie `name` removed.
    pub fn removal(&self, name: &'static str) -> Cookie<'static> {
        let mut cookie = self.cookie(name, String::new());
        cookie.make_removal();
        cookie
    }
}

/// The signed-in user, as the token says (the APIs check it again).
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub id: shared::id::UserId,
    pub email: String,
    pub role: Role,
}

/// Who is at the browser: signed in or not, with the CSRF token their
/// forms carry and their cart.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub user: Option<SessionUser>,
    token: Option<String>,
    pub csrf: String,
    pub cart: Cart,
    /// Their address, passed on to user-service with their sign-ins.
    pub ip: Option<IpAddr>,
}

impl Visitor {
    /// The token for calls as this user.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Knows the visitor from their cookies (a CSRF cookie is made for a new
/// one; a session cookie whose token is no longer valid is removed), and
/// gives every answer its security headers.
pub async fn visitor_layer(
    State(sessions): State<Sessions>,
    jar: CookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    let mut set = Vec::new();
    let csrf = match jar.get(CSRF_COOKIE).map(Cookie::value) {
        Some(value) if value.len() == 43 => value.to_string(),
        _ => {
            let value = random_token();
            set.push(sessions.cookie(CSRF_COOKIE, value.clone()));
            value
        }
    };
    let mut token = jar.get(SESSION_COOKIE).map(|c| c.value().to_string());
    let user = match token
        .as_deref()
        .map(|t| sessions.verifier.authenticate(Some(&format!("Bearer {t}"))))
    {
        Some(Ok(user)) => Some(SessionUser {
            id: user.id,
            email: user.email,
            role: user.role,
        }),
        Some(Err(_)) => {
            token = None;
            set.push(sessions.removal(SESSION_COOKIE));
            None
        }
        None => None,
    };
    let cart = jar
        .get(cart::COOKIE)
        .map(|c| Cart::parse(c.value()))
        .unwrap_or_default();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let ip = sessions.forwarded_for.client(peer, request.headers());
    request.extensions_mut().insert(Visitor {
        user,
        token,
        csrf,
        cart,
        ip,
    });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for cookie in set {
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    secure_headers(headers);
    response
}

/// The headers every page gets.
fn secure_headers(headers: &mut HeaderMap) {
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| PageError::internal("the visitor layer is missing"))
    }
}

/// A signed-in visitor: a page that needs one sends the others to sign in.
#[derive(Debug, Clone)]
pub struct Customer {
    pub visitor: Visitor,
    pub user: SessionUser,
    pub token: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Customer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        match (visitor.user.clone(), visitor.token.clone()) {
            (Some(user), Some(token)) => Ok(Customer {
                visitor,
                user,
                token,
            }),
            _ => Err(PageError::SignIn {
                next: parts
                    .uri
                    .path_and_query()
                    .map_or("/".into(), |p| p.to_string()),
            }),
        }
    }
}

/// An admin, as user-service says now (a demoted admin's token is no
/// longer one), for the console.
#[derive(Debug, Clone)]
pub struct Admin {
    pub visitor: Visitor,
    pub user: AuthUser,
    pub token: String,
}

impl FromRequestParts<crate::app::AppState> for Admin {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::app::AppState,
    ) -> Result<Self, Self::Rejection> {
        let Customer { visitor, token, .. } = Customer::from_request_parts(parts, state).await?;
        let sessions = &state.sessions;
        let header = format!("Bearer {token}");
        let user = shared::auth::authenticate(
            &sessions.verifier,
            sessions.authority.as_deref(),
            Some(&header),
        )
        .await
        .map_err(|e| PageError::from_api(&e))?;
        if user.role != Role::Admin {
            return Err(PageError::Forbidden(
                "The console is for admins only.".into(),
            ));
        }
        Ok(Admin {
            visitor,
            user,
            token,
        })
    }
}

/// A form posted from one of this site's own pages: the request comes
/// from this origin and carries the visitor's CSRF token; else 403, before
/// the form is read as `T`.
#[derive(Debug)]
pub struct Posted<T>(pub T);

/// Whether the browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or(origin);
            origin_host != host
        }
        _ => false,
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if cross_site(request.headers()) {
            return Err(PageError::Forbidden(
                "This form was sent from another site, so it was not accepted.".into(),
            ));
        }
        let visitor = request
            .extensions()
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| PageError::internal("the visitor layer is missing"))?;
        // Read no more than a form can be: a larger body is refused, not buffered.
        let body = axum::body::to_bytes(request.into_body(), FORM_LIMIT)
            .await
            .map_err(|_| {
                PageError::TooLarge(format!("A form is at most {} KiB.", FORM_LIMIT / 1024))
            })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| PageError::BadRequest("The form could not be read.".into()))?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(visitor.csrf.as_bytes())) {
            return Err(PageError::Forbidden(
                "This form has expired. Go back, reload the page and send it again.".into(),
            ));
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(Posted)
            .map_err(|e| PageError::BadRequest(format!("The form is not complete: {e}.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_post_from_another_site_is_cross_site() {
        assert!(!cross_site(&headers(&[("host", "shop:8085")])));
        assert!(!cross_site(&headers(&[
            ("host", "shop:8085"),
            ("origin", "http://shop:8085")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "shop:8085"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "shop:8085"),
            ("origin", "http://evil:8085")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "shop:8085"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "shop:8085"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "shop:8085"),
            ("sec-fetch-site", "same-site")
        ])));
    }

    #[test]
    fn csrf_tokens_are_random_and_cookie_sized() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }
}
