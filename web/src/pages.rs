//! What every page shares: its frame (the navigation, who is signed in,
//! the cart's size, a notice or an error), how a template becomes an
//! answer, and the pages of errors.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use shared::error::ApiError;

use crate::backend::CallError;
use crate::session::Visitor;

/// The frame around a page.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    /// Who is signed in (their email), if anyone.
    pub email: Option<String>,
    pub is_admin: bool,
    pub csrf: String,
    pub cart_units: i64,
    /// Good news at the top of the page.
    pub notice: Option<String>,
    /// Bad news at the top of the page (`role="alert"`).
    pub error: Option<String>,
}

impl Chrome {
    pub fn new(visitor: &Visitor, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            email: visitor.user.as_ref().map(|u| u.email.clone()),
            is_admin: visitor.is_admin(),
            csrf: visitor.csrf.clone(),
            cart_units: visitor.cart.units(),
            notice: None,
            error: None,
        }
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }
}

/// A rendered page, or a 500 naming the template that failed.
pub fn render(template: &impl Template) -> Response {
    render_with(StatusCode::OK, template)
}

/// A rendered page with `status`.
pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError::internal(format!("a page could not be drawn: {e}")).into_response(),
    }
}

/// A page drawn after an API refused what the visitor asked: the status
/// the API gave (a 4xx or 503; anything else is 502) and its `Retry-After`.
pub fn render_refusal(error: &CallError, template: &impl Template) -> Response {
    let mut response = render_with(error.page_status(), template);
    add_retry_after(&mut response, error);
    response
}

fn add_retry_after(response: &mut Response, error: &CallError) {
    if let CallError::Refused {
        retry_after: Some(secs),
        ..
    } = error
        && let Ok(value) = secs.to_string().parse()
    {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
}

/// An id in a page's path (`/orders/{id}`): one that is not an id is a
/// page that does not exist.
#[derive(Debug, Clone, Copy)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: std::str::FromStr> axum::extract::FromRequestParts<S> for PathId<T> {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| PageError::NotFound("There is no such page.".into()))?;
        text.parse()
            .map(PathId)
            .map_err(|_| PageError::NotFound(format!("There is nothing numbered {text:?} here.")))
    }
}

/// A page that could not be served, as the visitor sees it.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The page needs a signed-in visitor: to the sign-in page, then back to `next`.
    #[error("sign in first")]
    SignIn { next: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    /// Something the page needs (the broker) cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    /// An API refused or did not answer.
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{0}")]
    Internal(String),
}

impl PageError {
    pub fn internal(why: impl Into<String>) -> Self {
        Self::Internal(why.into())
    }

    /// A refusal of the authentication every service shares.
    pub fn from_api(error: &ApiError) -> Self {
        match error.status.as_u16() {
            401 => Self::SignIn {
                next: "/console".into(),
            },
            403 => Self::Forbidden(error.message.clone()),
            _ => Self::Call(CallError::Refused {
                status: error.status,
                code: error.code.as_str().to_string(),
                message: error.message.clone(),
                retry_after: error.retry_after,
            }),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::SignIn { .. } => StatusCode::SEE_OTHER,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Call(e) => e.page_status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The page of an error: its status, a sentence, and the way home.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    heading: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Self::SignIn { next } = &self {
            return Redirect::to(&sign_in_path(next)).into_response();
        }
        let status = self.status();
        let message = match &self {
            Self::Call(e) => e.message(),
            Self::Internal(why) => {
                tracing::error!(error = %why, "a page failed");
                "Something went wrong on our side. Try again.".into()
            }
            other => other.to_string(),
        };
        if let Self::Call(e) = &self {
            tracing::warn!(error = %shared::app::with_causes(e), "an API call failed");
        }
        let heading = match status.as_u16() {
            403 => "Not allowed",
            404 => "Not found",
            429 => "Too many requests",
            400..=499 => "That did not work",
            _ => "Not available right now",
        };
        let mut response = render_with(
            status,
            &ErrorPage {
                status: status.as_u16(),
                heading,
                message,
            },
        );
        if let Self::Call(e) = &self {
            add_retry_after(&mut response, e);
        }
        response
    }
}

/// The sign-in page, coming back to `next` (a path of this site only).
pub fn sign_in_path(next: &str) -> String {
    let query = serde_urlencoded::to_string([("next", safe_next(next))]).unwrap_or_default();
    format!("/signin?{query}")
}

/// `next` if it is a path of this site, else `/`: a link can't send a
/// visitor who signs in to another site.
pub fn safe_next(next: &str) -> &str {
    // Browsers drop tabs and newlines in a URL and read `\` as `/`, so
    // "/\t/evil.example" would be "//evil.example": none of them is let through.
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    if local { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/orders/5"), "/orders/5");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/\t/evil.example"), "/");
        assert_eq!(safe_next("/\n/evil.example"), "/");
        assert_eq!(safe_next("/ /evil.example"), "/");
        assert_eq!(safe_next("/orders?page=2"), "/orders?page=2");
        assert_eq!(sign_in_path("/cart"), "/signin?next=%2Fcart");
    }
}
