//! The storefront: the catalogue with search and pages, a product's page,
//! signing up, in and out, the cart, checkout (one order however often
//! "Place order" is sent: its form carries one `Idempotency-Key`), the
//! customer's orders, and an order's page whose status and timeline follow
//! the saga live (server-sent events) until it settles.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use futures::Stream;
use order_service::model::{OrderStatus, OrderView};
use order_service::timeline::Timeline;
use serde::Deserialize;
use shared::id::{OrderId, ProductId};

use crate::app::AppState;
use crate::backend::{CallError, Product};
use crate::cart::{self, Cart};
use crate::pages::{Chrome, PageError, PathId, render, render_refusal, safe_next};
use crate::session::{Customer, Posted, SESSION_COOKIE, Visitor};
use crate::steps;

/// Products on one page of the catalogue.
pub const PAGE_SIZE: i64 = 12;
/// Orders on one page of "my orders".
const ORDERS_PAGE_SIZE: i64 = 20;
/// How long a live order page is followed at most.
const LIVE_FOR: Duration = Duration::from_secs(600);
/// How long a checkout waits for the same order placed by an earlier click.
const IN_PROGRESS_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
pub struct CatalogueQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<i64>,
}

/// Numbers of pages, with where each link goes.
#[derive(Debug, Clone)]
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    fn new(page: i64, total: i64, size: i64, link: impl Fn(i64) -> String) -> Self {
        let pages = ((total + size - 1) / size).max(1);
        Self {
            page,
            pages,
            prev: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
        }
    }
}

#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    chrome: Chrome,
    search: String,
    products: Vec<Product>,
    total: i64,
    pager: Pager,
}

/// `GET /`: the catalogue, a page at a time, names matching `q`.
pub async fn catalogue(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<CatalogueQuery>,
) -> Result<Response, PageError> {
    let search = query
        .q
        .unwrap_or_default()
        .trim()
        .chars()
        .take(100)
        .collect::<String>();
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let listed = state
        .backend
        .products(
            (!search.is_empty()).then_some(search.as_str()),
            PAGE_SIZE,
            (page - 1) * PAGE_SIZE,
        )
        .await?;
    let pager = Pager::new(page, listed.total, PAGE_SIZE, |p| {
        let mut pairs = vec![("page", p.to_string())];
        if !search.is_empty() {
            pairs.insert(0, ("q", search.clone()));
        }
        format!(
            "/?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    });
    let title = if search.is_empty() {
        "Shop".to_string()
    } else {
        format!("Search: {search}")
    };
    Ok(render(&CataloguePage {
        chrome: Chrome::new(&visitor, title),
        search,
        products: listed.items,
        total: listed.total,
        pager,
    }))
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    chrome: Chrome,
    product: Product,
    max: i32,
}

/// `GET /products/{id}`.
pub async fn product(
    State(state): State<AppState>,
    visitor: Visitor,
    PathId(id): PathId<ProductId>,
) -> Result<Response, PageError> {
    let product = state.backend.product(id).await.map_err(not_found_as_page)?;
    let max = product.stock.clamp(1, cart::MAX_QUANTITY);
    Ok(render(&ProductPage {
        chrome: Chrome::new(&visitor, product.name.clone()),
        product,
        max,
    }))
}

fn not_found_as_page(e: CallError) -> PageError {
    match e.status() {
        Some(StatusCode::NOT_FOUND) => PageError::NotFound(e.message()),
        _ => PageError::Call(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct CartForm {
    product_id: ProductId,
    quantity: i32,
}

/// The cart cookie for `cart`.
fn cart_cookie(state: &AppState, cart: &Cart) -> axum_extra::extract::cookie::Cookie<'static> {
    if cart.is_empty() {
        state.sessions.removal(cart::COOKIE)
    } else {
        state.sessions.cookie(cart::COOKIE, cart.encode())
    }
}

/// `POST /cart/add`: more units of a product in the cart.
pub async fn cart_add(
    State(state): State<AppState>,
    visitor: Visitor,
    jar: CookieJar,
    Posted(form): Posted<CartForm>,
) -> Result<Response, PageError> {
    let mut cart = visitor.cart;
    cart.add(form.product_id, form.quantity)
        .map_err(|e| PageError::BadRequest(format!("Not added: {e}.")))?;
    Ok((
        jar.add(cart_cookie(&state, &cart)),
        Redirect::to("/cart?added=1"),
    )
        .into_response())
}

/// `POST /cart/update`: a line's new quantity (0 takes it out).
pub async fn cart_update(
    State(state): State<AppState>,
    visitor: Visitor,
    jar: CookieJar,
    Posted(form): Posted<CartForm>,
) -> Result<Response, PageError> {
    let mut cart = visitor.cart;
    cart.set(form.product_id, form.quantity)
        .map_err(|e| PageError::BadRequest(format!("Not changed: {e}.")))?;
    Ok((jar.add(cart_cookie(&state, &cart)), Redirect::to("/cart")).into_response())
}

/// A line of the cart as the page shows it.
#[derive(Debug, Clone)]
pub struct CartLine {
    pub product_id: ProductId,
    pub name: String,
    pub price: String,
    pub quantity: i32,
    pub subtotal: String,
    /// Why it can't be bought as it is, if it can't.
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    chrome: Chrome,
    lines: Vec<CartLine>,
    total: String,
    /// The checkout form's key: every send of this form places one order.
    idempotency_key: String,
    signed_in: bool,
}

#[derive(Debug, Deserialize)]
pub struct CartQuery {
    #[serde(default)]
    added: Option<String>,
}

/// `GET /cart`.
pub async fn cart_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<CartQuery>,
) -> Result<Response, PageError> {
    let notice = query.added.map(|_| "Added to your cart.".to_string());
    let chrome = Chrome::new(&visitor, "Your cart").with_notice(notice);
    Ok(cart_view(&state, &visitor, chrome, None).await)
}

/// The cart page; after `refusal`, with the API's status.
async fn cart_view(
    state: &AppState,
    visitor: &Visitor,
    chrome: Chrome,
    refusal: Option<&CallError>,
) -> Response {
    let products = futures::future::join_all(
        visitor
            .cart
            .lines()
            .iter()
            .map(|line| state.backend.product(line.product_id)),
    )
    .await;
    let mut lines = Vec::new();
    let mut priced = Vec::new();
    for (line, product) in visitor.cart.lines().iter().zip(products) {
        match product {
            Ok(p) => {
                let subtotal = shared::money::order_total([(p.price, line.quantity)]).ok();
                priced.push((p.price, line.quantity));
                let problem = (p.stock < line.quantity).then(|| {
                    if p.stock == 0 {
                        "Out of stock".to_string()
                    } else {
                        format!("Only {} in stock", p.stock)
                    }
                });
                lines.push(CartLine {
                    product_id: p.id,
                    name: p.name,
                    price: p.price.to_string(),
                    quantity: line.quantity,
                    subtotal: subtotal.map_or("too large".into(), |s| s.to_string()),
                    problem,
                });
            }
            Err(e) => lines.push(CartLine {
                product_id: line.product_id,
                name: format!("Product {}", line.product_id),
                price: "-".into(),
                quantity: line.quantity,
                subtotal: "-".into(),
                problem: Some(e.message()),
            }),
        }
    }
    let total = shared::money::order_total(priced).ok();
    let page = CartPage {
        chrome,
        lines,
        total: total.map_or("too large to pay".into(), |t| t.to_string()),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        signed_in: visitor.user.is_some(),
    };
    match refusal {
        Some(e) => render_refusal(e, &page),
        None => render(&page),
    }
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    idempotency_key: uuid::Uuid,
}

/// `POST /checkout`: places the cart as one order under the form's key,
/// then shows the order. A second send of the same form (a double click,
/// a reload) gets the same order.
pub async fn checkout(
    State(state): State<AppState>,
    customer: Customer,
    jar: CookieJar,
    Posted(form): Posted<CheckoutForm>,
) -> Result<Response, PageError> {
    let visitor = &customer.visitor;
    if visitor.cart.is_empty() {
        return Ok(Redirect::to("/cart").into_response());
    }
    let key = form.idempotency_key.to_string();
    let started = tokio::time::Instant::now();
    let placed = loop {
        match state
            .backend
            .place_order(&customer.token, visitor.cart.lines(), &key)
            .await
        {
            // The same key is still being placed by an earlier click: its
            // order is what this one answers too.
            Err(e)
                if e.code() == Some("request_in_progress")
                    && started.elapsed() < IN_PROGRESS_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    match placed {
        Ok(order) => Ok((
            jar.add(state.sessions.removal(cart::COOKIE)),
            Redirect::to(&format!("/orders/{}", order.id)),
        )
            .into_response()),
        Err(e) if e.status() == Some(StatusCode::UNAUTHORIZED) => Err(PageError::SignIn {
            next: "/cart".into(),
        }),
        Err(e) => {
            let chrome = Chrome::new(visitor, "Your cart")
                .with_error(format!("Your order was not placed. {}", e.message()));
            Ok(cart_view(&state, visitor, chrome, Some(&e)).await)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    next: String,
    email: String,
}

/// `GET /signin`.
pub async fn sign_in_page(visitor: Visitor, Query(query): Query<NextQuery>) -> Response {
    let next = safe_next(query.next.as_deref().unwrap_or("/")).to_string();
    render(&SignInPage {
        chrome: Chrome::new(&visitor, "Sign in"),
        next,
        email: String::new(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /signin`: the token in the session cookie, then back where the
/// visitor was going.
pub async fn sign_in(
    State(state): State<AppState>,
    visitor: Visitor,
    jar: CookieJar,
    Posted(form): Posted<SignInForm>,
) -> Result<Response, PageError> {
    let next = safe_next(form.next.as_deref().unwrap_or("/")).to_string();
    match state
        .backend
        .login(visitor.ip, form.email.trim(), &form.password)
        .await
    {
        Ok(signed_in) => Ok((
            jar.add(state.sessions.cookie(SESSION_COOKIE, signed_in.token)),
            Redirect::to(&next),
        )
            .into_response()),
        Err(e) => {
            let message = match e.status().map(|s| s.as_u16()) {
                Some(401) => "Wrong email or password.".to_string(),
                _ => e.message(),
            };
            Ok(render_refusal(
                &e,
                &SignInPage {
                    chrome: Chrome::new(&visitor, "Sign in").with_error(message),
                    next,
                    email: form.email,
                },
            ))
        }
    }
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage {
    chrome: Chrome,
    name: String,
    email: String,
}

/// `GET /signup`.
pub async fn sign_up_page(visitor: Visitor) -> Response {
    render(&SignUpPage {
        chrome: Chrome::new(&visitor, "Create your account"),
        name: String::new(),
        email: String::new(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SignUpForm {
    name: String,
    email: String,
    password: String,
}

/// `POST /signup`: the account, then signed in.
pub async fn sign_up(
    State(state): State<AppState>,
    visitor: Visitor,
    jar: CookieJar,
    Posted(form): Posted<SignUpForm>,
) -> Result<Response, PageError> {
    let email = form.email.trim().to_string();
    if let Err(e) = state
        .backend
        .register(visitor.ip, form.name.trim(), &email, &form.password)
        .await
    {
        return Ok(render_refusal(
            &e,
            &SignUpPage {
                chrome: Chrome::new(&visitor, "Create your account").with_error(e.message()),
                name: form.name,
                email,
            },
        ));
    }
    match state
        .backend
        .login(visitor.ip, &email, &form.password)
        .await
    {
        Ok(signed_in) => Ok((
            jar.add(state.sessions.cookie(SESSION_COOKIE, signed_in.token)),
            Redirect::to("/"),
        )
            .into_response()),
        // The account exists: signing in is what is left to do.
        Err(e) => {
            let chrome = Chrome::new(&visitor, "Sign in")
                .with_notice(Some("Your account is created; sign in to go on.".into()))
                .with_error(e.message());
            Ok(render_refusal(
                &e,
                &SignInPage {
                    chrome,
                    next: "/".into(),
                    email,
                },
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /signout`: the token revoked at user-service, the cookie gone.
pub async fn sign_out(
    State(state): State<AppState>,
    visitor: Visitor,
    jar: CookieJar,
    Posted(_): Posted<Empty>,
) -> Response {
    if let Some(token) = visitor.token()
        && let Err(e) = state.backend.logout(token).await
    {
        // The cookie goes anyway; the token expires on its own.
        tracing::warn!(error = %shared::app::with_causes(&e), "logout failed");
    }
    (
        jar.add(state.sessions.removal(SESSION_COOKIE)),
        Redirect::to("/"),
    )
        .into_response()
}

/// An order in a list.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: OrderId,
    pub placed: String,
    pub status: OrderStatus,
    pub total: String,
    pub units: i64,
}

impl From<&OrderView> for OrderRow {
    fn from(o: &OrderView) -> Self {
        Self {
            id: o.id,
            placed: o.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            status: o.status,
            total: o
                .total_price
                .map_or("-".into(), |t| format!("{t} {}", o.currency)),
            units: o.items.iter().map(|i| i64::from(i.quantity)).sum(),
        }
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    chrome: Chrome,
    orders: Vec<OrderRow>,
    pager: Pager,
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    page: Option<i64>,
}

/// `GET /orders`: the customer's orders, newest first.
pub async fn orders(
    State(state): State<AppState>,
    customer: Customer,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let listed = state
        .backend
        .orders(
            &customer.token,
            ORDERS_PAGE_SIZE,
            (page - 1) * ORDERS_PAGE_SIZE,
        )
        .await?;
    Ok(render(&OrdersPage {
        chrome: Chrome::new(&customer.visitor, "My orders"),
        orders: listed.items.iter().map(OrderRow::from).collect(),
        pager: Pager::new(page, listed.total, ORDERS_PAGE_SIZE, |p| {
            format!("/orders?page={p}")
        }),
    }))
}

/// A step of the timeline as the pages show it.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub at: String,
    pub label: String,
    pub lane: steps::Lane,
    pub cause: &'static str,
    pub detail: Option<String>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub trace_id: Option<String>,
}

impl StepRow {
    pub fn rows(timeline: &Timeline) -> Vec<StepRow> {
        timeline
            .steps
            .iter()
            .map(|s| StepRow {
                at: s.at.format("%H:%M:%S%.3f").to_string(),
                label: steps::label(s),
                lane: steps::lane(s.step),
                cause: steps::cause(s.cause),
                detail: s.detail.clone(),
                event_type: s.event_type.clone(),
                event_id: s.event_id.map(|id| id.to_string()),
                trace_id: s.trace_id.clone(),
            })
            .collect()
    }
}

/// The part of an order's page that follows the saga live.
#[derive(Template)]
#[template(path = "order_live.html")]
pub struct OrderLive {
    pub status: OrderStatus,
    pub status_text: String,
    pub settled: bool,
    pub steps: Vec<StepRow>,
}

impl OrderLive {
    pub fn new(timeline: &Timeline) -> Self {
        Self {
            status: timeline.status,
            status_text: steps::status_text(timeline.status, &timeline.steps),
            settled: steps::settled(timeline.status, &timeline.steps),
            steps: StepRow::rows(timeline),
        }
    }
}

/// A line of an order.
#[derive(Debug, Clone)]
pub struct ItemRow {
    pub product_id: ProductId,
    pub name: String,
    pub quantity: i32,
    pub unit_price: String,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    chrome: Chrome,
    order: OrderRow,
    reason: Option<String>,
    items: Vec<ItemRow>,
    live: String,
    can_cancel: bool,
    trace_link: Option<String>,
}

/// `GET /orders/{id}`.
pub async fn order(
    State(state): State<AppState>,
    customer: Customer,
    PathId(id): PathId<OrderId>,
) -> Result<Response, PageError> {
    order_view(
        &state,
        &customer,
        id,
        Chrome::new(&customer.visitor, format!("Order {id}")),
        None,
    )
    .await
}

async fn order_view(
    state: &AppState,
    customer: &Customer,
    id: OrderId,
    chrome: Chrome,
    refusal: Option<&CallError>,
) -> Result<Response, PageError> {
    let (order, timeline) = tokio::join!(
        state.backend.order(&customer.token, id),
        state.backend.timeline(&customer.token, id)
    );
    let order = order.map_err(not_found_as_page)?;
    let timeline = timeline.map_err(not_found_as_page)?;
    let names = futures::future::join_all(
        order
            .items
            .iter()
            .map(|i| state.backend.product(i.product_id)),
    )
    .await;
    let items = order
        .items
        .iter()
        .zip(names)
        .map(|(item, product)| ItemRow {
            product_id: item.product_id,
            name: product.map_or_else(|_| format!("Product {}", item.product_id), |p| p.name),
            quantity: item.quantity,
            unit_price: item.unit_price.map_or("-".into(), |p| p.to_string()),
        })
        .collect();
    let live = OrderLive::new(&timeline);
    // The trace shows the services' insides: for admins (the console's).
    let trace_link = timeline
        .steps
        .iter()
        .find_map(|s| s.trace_id.clone())
        .filter(|_| customer.visitor.is_admin())
        .map(|trace| state.trace_link(&trace));
    let page = OrderPage {
        chrome,
        reason: order.reason.map(|r| r.to_string()),
        can_cancel: order.status == OrderStatus::Pending,
        order: OrderRow::from(&order),
        items,
        live: live
            .render()
            .map_err(|e| PageError::internal(e.to_string()))?,
        trace_link,
    };
    Ok(match refusal {
        Some(e) => render_refusal(e, &page),
        None => render(&page),
    })
}

/// `GET /orders/{id}/live`: the live part of the order's page, sent again
/// (event `update`) each time its timeline changes, until the order is
/// settled (event `end`).
pub async fn order_live(
    State(state): State<AppState>,
    customer: Customer,
    PathId(id): PathId<OrderId>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PageError> {
    // The order must be the caller's before anything is streamed.
    let first = state
        .backend
        .timeline(&customer.token, id)
        .await
        .map_err(not_found_as_page)?;
    let poll = state.live_poll;
    let backend = state.backend.clone();
    let token = customer.token;
    let stream = futures::stream::unfold(
        (
            Some(first),
            None::<String>,
            tokio::time::Instant::now(),
            false,
        ),
        move |(mut next, mut last, started, done)| {
            let backend = backend.clone();
            let token = token.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let timeline = match next.take() {
                        Some(t) => Some(t),
                        None => {
                            tokio::time::sleep(poll).await;
                            backend.timeline(&token, id).await.ok()
                        }
                    };
                    let expired = started.elapsed() > LIVE_FOR;
                    let Some(timeline) = timeline else {
                        if expired {
                            return Some((
                                Ok(SseEvent::default().event("end").data("expired")),
                                (None, last, started, true),
                            ));
                        }
                        continue;
                    };
                    let live = OrderLive::new(&timeline);
                    let html = live.render().unwrap_or_default();
                    if live.settled || expired {
                        let event = SseEvent::default().event("end").data(one_line(&html));
                        return Some((Ok(event), (None, Some(html), started, true)));
                    }
                    if last.as_deref() != Some(html.as_str()) {
                        let event = SseEvent::default().event("update").data(one_line(&html));
                        last = Some(html);
                        return Some((Ok(event), (None, last, started, false)));
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// HTML as one line of an event's data (its newlines are only layout).
fn one_line(html: &str) -> String {
    html.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// `POST /orders/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    customer: Customer,
    PathId(id): PathId<OrderId>,
    Posted(_): Posted<Empty>,
) -> Result<Response, PageError> {
    match state.backend.cancel(&customer.token, id).await {
        Ok(_) => Ok(Redirect::to(&format!("/orders/{id}")).into_response()),
        Err(e) => {
            let chrome = Chrome::new(&customer.visitor, format!("Order {id}"))
                .with_error(format!("Not cancelled. {}", e.message()));
            order_view(&state, &customer, id, chrome, Some(&e)).await
        }
    }
}
