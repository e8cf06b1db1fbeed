//! web: minishop in the browser (docs/web.md). Server-rendered HTML
//! (askama templates, a little hand-written JavaScript, no asset from
//! anywhere else) over the same REST APIs every client uses:
//! - the storefront ([`shop`]): catalogue, cart, checkout, the customer's
//!   orders, each order's saga followed live;
//! - the saga console for admins ([`console`]): health, lag, alerts and
//!   charts, a live feed of the topic ([`feed`]), an order's swimlane, the
//!   dead letters, and traces received over OTLP ([`traces`]);
//! - sessions in HttpOnly, SameSite=Strict cookies, forms with CSRF
//!   tokens, a Content-Security-Policy ([`session`]).
//!
//! It keeps no database: the token and the cart live in the visitor's
//! cookies, everything else is asked of the services.

pub mod app;
pub mod backend;
pub mod cart;
pub mod charts;
pub mod config;
pub mod console;
pub mod feed;
pub mod pages;
pub mod session;
pub mod shop;
pub mod steps;
pub mod traces;
pub mod watch;

pub use config::Config;
