//! The saga console, for admins (user-service says who is one, at every
//! request): every instance's health and readiness, each consumer group's
//! lag per partition, the alerts and small charts from Prometheus, the
//! latest orders, a live feed of the topic's events ([`crate::feed`]); an
//! order's swimlane (each step in its service's lane, with its time, cause,
//! event and trace); the dead letters, listed, shown and replayed (the same
//! code as `minishop-ops dlq`); the traces web keeps ([`crate::traces`]).

use std::convert::Infallible;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use futures::Stream;
use order_service::model::OrderView;
use order_service::timeline::Timeline;
use serde::Deserialize;
use serde_json::Value;
use shared::id::OrderId;
use shared::kafka::events::{Producer, producer_of};

use crate::app::AppState;
use crate::charts::Chart;
use crate::feed::{Entry, ReaderState};
use crate::pages::{Chrome, PageError, PathId, render};
use crate::session::{Admin, Posted};
use crate::shop::OrderRow;
use crate::steps::{self, Lane};
use crate::traces::Span;

/// How many events the console's feed shows at first.
const FEED_SHOWN: usize = 50;
/// The latest orders: how many, found among how many events.
const ORDERS_SHOWN: usize = 15;
const ORDERS_SCANNED: usize = 1000;

/// An order the topic spoke of lately, with its latest event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub order: String,
    pub last_event: String,
    pub time: String,
}

/// The orders of `events` (newest first), each once with its newest event.
pub fn latest_orders(events: &[Arc<Entry>], n: usize) -> Vec<OrderLine> {
    let mut seen = std::collections::HashSet::new();
    // By time: the feed reads its backlog a partition after another.
    let mut events: Vec<&Arc<Entry>> = events.iter().collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    events
        .into_iter()
        .filter_map(|e| {
            let order = e.order.clone()?;
            seen.insert(order.clone()).then(|| OrderLine {
                order,
                last_event: e.event_type.clone().unwrap_or_else(|| "?".into()),
                time: e.time(),
            })
        })
        .take(n)
        .collect()
}

/// One instance's health and readiness, as it answered.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub name: String,
    pub url: String,
    pub live: bool,
    pub ready: bool,
    /// What `/ready` said of each dependency.
    pub checks: String,
}

/// A firing or pending alert, as Prometheus has it.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub name: String,
    pub state: String,
    pub severity: String,
    pub summary: String,
}

/// An event in the feed.
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub time: String,
    pub at: String,
    pub order: Option<String>,
    pub line: String,
}

impl From<&Entry> for FeedRow {
    fn from(e: &Entry) -> Self {
        Self {
            time: e.time(),
            at: format!("{}@{}", e.partition, e.offset),
            order: e.order.clone(),
            line: e.line.clone(),
        }
    }
}

/// One line of the live feed, as the page and its events draw it.
#[derive(Template)]
#[template(path = "console_feed_item.html")]
struct FeedItem<'a> {
    row: &'a FeedRow,
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage {
    chrome: Chrome,
    instances: Vec<InstanceRow>,
    lag: Result<Vec<ops::events::Lag>, String>,
    dead_letters: Result<i64, String>,
    /// When the lag and the dead letters were measured.
    measured: String,
    alerts: Option<Result<Vec<AlertRow>, String>>,
    charts: Vec<Chart>,
    prometheus: Option<String>,
    orders: Vec<OrderLine>,
    feed: Vec<String>,
    feed_state: String,
    traces: Vec<crate::traces::TraceSummary>,
    local_traces: bool,
}

/// `GET /console`.
pub async fn overview(State(state): State<AppState>, admin: Admin) -> Result<Response, PageError> {
    let console = &state.console;
    let (instances, alerts, charts) = tokio::join!(
        instances(&state),
        alerts(&state),
        crate::charts::saga_charts(state.backend.http(), console.prometheus_url.as_deref()),
    );
    let broker = console.watch.view();
    let feed = console
        .feed
        .recent(FEED_SHOWN)
        .iter()
        .map(|e| {
            FeedItem {
                row: &FeedRow::from(e.as_ref()),
            }
            .render()
            .unwrap_or_default()
        })
        .collect();
    let feed_state = match console.feed.state() {
        ReaderState::Starting => "starting".into(),
        ReaderState::Reading => "reading the topic".into(),
        ReaderState::Failing(why) => format!("cannot read the topic: {why}"),
    };
    Ok(render(&ConsolePage {
        chrome: Chrome::new(&admin.visitor, "Saga console"),
        instances,
        lag: broker.lag,
        dead_letters: broker.dead_letters,
        measured: broker
            .at
            .map_or("not yet".into(), |t| t.format("%H:%M:%S").to_string()),
        alerts,
        charts,
        prometheus: console.prometheus_url.clone(),
        orders: latest_orders(&console.feed.recent(ORDERS_SCANNED), ORDERS_SHOWN),
        feed,
        feed_state,
        traces: console
            .traces
            .recent(200)
            .into_iter()
            .filter(|t| t.services.len() >= 3)
            .take(10)
            .collect(),
        local_traces: state.jaeger_url.is_none(),
    }))
}

async fn instances(state: &AppState) -> Vec<InstanceRow> {
    let http = state.backend.http();
    futures::future::join_all(state.console.instances.iter().map(|i| async move {
        let live = http
            .get(format!("{}/health", i.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let (ready, checks) = match http.get(format!("{}/ready", i.url)).send().await {
            Ok(r) => {
                let ready = r.status().is_success();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let checks = body
                    .get("checks")
                    .and_then(Value::as_object)
                    .map(|checks| {
                        checks
                            .iter()
                            .map(|(name, v)| {
                                let status = v.get("status").and_then(Value::as_str).unwrap_or("?");
                                format!("{name}: {status}")
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                (ready, checks)
            }
            Err(_) => (false, "no answer".into()),
        };
        InstanceRow {
            name: i.name.clone(),
            url: i.url.clone(),
            live,
            ready,
            checks,
        }
    }))
    .await
}

async fn alerts(state: &AppState) -> Option<Result<Vec<AlertRow>, String>> {
    let prometheus = state.console.prometheus_url.as_deref()?;
    let answer = async {
        let body: Value = state
            .backend
            .http()
            .get(format!("{prometheus}/api/v1/alerts"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>(body)
    }
    .await;
    Some(match answer {
        Ok(body) => Ok(body["data"]["alerts"]
            .as_array()
            .map(|alerts| {
                alerts
                    .iter()
                    .map(|a| {
                        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                        AlertRow {
                            name: text(&a["labels"]["alertname"]),
                            state: text(&a["state"]),
                            severity: text(&a["labels"]["severity"]),
                            summary: text(&a["annotations"]["summary"]),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()),
        Err(e) => Err(format!("Prometheus did not answer: {e}")),
    })
}

/// `GET /console/feed/live`: each new event of the topic (event `entry`).
pub async fn feed_live(
    State(state): State<AppState>,
    _admin: Admin,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = state.console.feed.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(entry) => {
                    let html = FeedItem {
                        row: &FeedRow::from(entry.as_ref()),
                    }
                    .render()
                    .unwrap_or_default();
                    return Some((Ok(SseEvent::default().event("entry").data(html)), receiver));
                }
                // Too slow a reader skips what it missed.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One row of a swimlane: when, in which lane, what.
#[derive(Debug, Clone)]
pub struct SwimRow {
    pub sort: DateTime<Utc>,
    pub time: String,
    pub lane: Lane,
    pub title: String,
    pub facts: Vec<(String, String)>,
    pub trace: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "console_order.html")]
struct OrderLanes {
    chrome: Chrome,
    order: OrderRow,
    user_id: String,
    status_text: String,
    lanes: [Lane; 4],
    rows: Vec<SwimRow>,
    trace_link: Option<String>,
    notifications_error: Option<String>,
}

/// `GET /console/orders/{id}`: the order's swimlane.
pub async fn order(
    State(state): State<AppState>,
    admin: Admin,
    PathId(id): PathId<OrderId>,
) -> Result<Response, PageError> {
    let (order, timeline) = tokio::join!(
        state.backend.order(&admin.token, id),
        state.backend.timeline(&admin.token, id)
    );
    let order: OrderView = order?;
    let timeline: Timeline = timeline?;
    let events = state.console.feed.of_order(&id.to_string());
    let notifications = state
        .backend
        .notifications(&admin.token, order.user_id)
        .await;
    let (notifications, notifications_error) = match notifications {
        Ok(listed) => (
            listed
                .items
                .into_iter()
                .filter(|n| n.order_id == id)
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.message())),
    };
    let rows = swimlane(&|t| state.trace_link(t), &timeline, &events, &notifications);
    let trace_link = timeline
        .steps
        .iter()
        .find_map(|s| s.trace_id.clone())
        .map(|t| state.trace_link(&t));
    Ok(render(&OrderLanes {
        chrome: Chrome::new(&admin.visitor, format!("Order {id}: swimlane")),
        status_text: steps::status_text(timeline.status, &timeline.steps),
        order: OrderRow::from(&order),
        user_id: order.user_id.to_string(),
        lanes: Lane::ALL,
        rows,
        trace_link,
        notifications_error,
    }))
}

/// The swimlane's rows, by time: the order's steps in the lanes of the
/// services that took them, each event on the topic in its producer's
/// lane, each notification in notification-service's.
pub fn swimlane(
    trace_link: &dyn Fn(&str) -> String,
    timeline: &Timeline,
    events: &[Arc<Entry>],
    notifications: &[crate::backend::Notification],
) -> Vec<SwimRow> {
    let trace = |t: &Option<String>| t.clone().map(|t| (trace_link(&t), t));
    let mut rows: Vec<SwimRow> = timeline
        .steps
        .iter()
        .map(|s| {
            let mut facts = vec![("cause".to_string(), steps::cause(s.cause).to_string())];
            if let Some(detail) = &s.detail {
                facts.push(("detail".into(), detail.clone()));
            }
            if let Some(id) = s.event_id {
                facts.push(("event id".into(), id.to_string()));
            }
            SwimRow {
                sort: s.at,
                time: s.at.format("%H:%M:%S%.3f").to_string(),
                lane: steps::lane(s.step),
                title: steps::label(s),
                facts,
                trace: trace(&s.trace_id),
            }
        })
        .collect();
    for e in events {
        let lane = match e.event_type.as_deref().and_then(producer_of) {
            Some(Producer::PaymentService) => Lane::Payment,
            _ => Lane::Order,
        };
        let mut facts = vec![(
            "partition@offset".to_string(),
            format!("{}@{}", e.partition, e.offset),
        )];
        if let Some(id) = &e.event_id {
            facts.push(("event id".into(), id.clone()));
        }
        if let Some(key) = &e.signed_by {
            facts.push(("signed by key".into(), key.clone()));
        }
        rows.push(SwimRow {
            sort: e.at.unwrap_or(DateTime::<Utc>::MIN_UTC),
            time: e.time(),
            lane,
            title: format!(
                "On the topic: {}",
                e.event_type.as_deref().unwrap_or("unknown event")
            ),
            facts,
            trace: trace(&e.trace_id),
        });
    }
    for n in notifications {
        let mut facts = vec![
            ("because of".to_string(), n.event_type.clone()),
            ("status".into(), n.status.clone()),
            ("event id".into(), n.event_id.to_string()),
        ];
        if let Some(sent) = n.sent_at {
            facts.push(("sent".into(), sent.format("%H:%M:%S%.3f").to_string()));
        }
        rows.push(SwimRow {
            sort: n.created_at,
            time: n.created_at.format("%H:%M:%S%.3f").to_string(),
            lane: Lane::Notification,
            title: format!("Notification: {}", n.subject),
            facts,
            trace: None,
        });
    }
    rows.sort_by_key(|r| r.sort);
    rows
}

#[derive(Debug, Default, Deserialize)]
pub struct LetterFilter {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl LetterFilter {
    fn selection(&self) -> ops::dlq::Selection {
        let some = |v: &Option<String>| {
            v.clone()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        ops::dlq::Selection {
            all: false,
            offsets: Vec::new(),
            event_type: some(&self.event_type),
            order: some(&self.order),
            error_contains: some(&self.error),
        }
    }
}

/// A dead letter as the console lists it.
#[derive(Debug, Clone)]
pub struct LetterRow {
    pub offset: i64,
    pub origin: String,
    pub event_type: String,
    pub order: String,
    pub event_id: String,
    pub error: String,
    pub json: String,
}

impl From<&ops::dlq::DeadLetter> for LetterRow {
    fn from(l: &ops::dlq::DeadLetter) -> Self {
        Self {
            offset: l.offset,
            origin: l.origin(),
            event_type: l.event_type().unwrap_or_else(|| "-".into()),
            order: l.key_text().unwrap_or_else(|| "-".into()),
            event_id: l.event_id().unwrap_or_else(|| "-".into()),
            error: l.error(),
            json: serde_json::to_string_pretty(&l.to_json()).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console_dlq.html")]
struct LettersPage {
    chrome: Chrome,
    event_type: String,
    order: String,
    error: String,
    filtered: bool,
    letters: Vec<LetterRow>,
    total: usize,
}

async fn read_letters(state: &AppState) -> Result<Vec<ops::dlq::DeadLetter>, PageError> {
    let kafka = state.console.kafka.clone();
    tokio::task::spawn_blocking(move || ops::dlq::read_all(&kafka.brokers, &kafka.dlq_topic()))
        .await
        .map_err(|e| PageError::internal(e.to_string()))?
        .map_err(|e| PageError::Unavailable(format!("The dead letters could not be read: {e:#}")))
}

/// `GET /console/dlq`: the dead letters, those the filter selects.
pub async fn letters(
    State(state): State<AppState>,
    admin: Admin,
    Query(filter): Query<LetterFilter>,
) -> Result<Response, PageError> {
    dlq_page(&state, &admin, filter, None).await
}

async fn dlq_page(
    state: &AppState,
    admin: &Admin,
    filter: LetterFilter,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let letters = read_letters(state).await?;
    let selection = filter.selection();
    let shown: Vec<LetterRow> = letters
        .iter()
        .filter(|l| selection.selects(l))
        .map(LetterRow::from)
        .collect();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(render(&LettersPage {
        chrome: Chrome::new(&admin.visitor, "Dead letters").with_notice(notice),
        filtered: selection.event_type.is_some()
            || selection.order.is_some()
            || selection.error_contains.is_some(),
        event_type: text(&filter.event_type),
        order: text(&filter.order),
        error: text(&filter.error),
        total: letters.len(),
        letters: shown,
    }))
}

#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    /// `one` (with `offset`), `filtered` (with the filter's fields) or `all`.
    what: String,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `POST /console/dlq/replay`: sends letters back to their topic, with
/// their key, headers and event id (a consumer that applied one already
/// does nothing again).
pub async fn replay(
    State(state): State<AppState>,
    admin: Admin,
    Posted(form): Posted<ReplayForm>,
) -> Result<Response, PageError> {
    let filter = LetterFilter {
        event_type: form.event_type,
        order: form.order,
        error: form.error,
    };
    let mut selection = filter.selection();
    match (form.what.as_str(), form.offset) {
        ("one", Some(offset)) => {
            selection = ops::dlq::Selection {
                offsets: vec![offset],
                ..Default::default()
            }
        }
        ("filtered", _)
            if selection.event_type.is_some()
                || selection.order.is_some()
                || selection.error_contains.is_some() => {}
        ("all", _) => {
            selection = ops::dlq::Selection {
                all: true,
                ..Default::default()
            }
        }
        _ => {
            return Err(PageError::BadRequest(
                "Say which letters to replay: one (with its offset), the filtered ones (with a filter), or all.".into(),
            ));
        }
    }
    let letters = read_letters(&state).await?;
    let kafka = &state.console.kafka;
    let sent = ops::dlq::replay(&kafka.brokers, &letters, &selection, &kafka.topic)
        .await
        .map_err(|e| PageError::Unavailable(format!("The replay failed: {e:#}")))?;
    tracing::info!(admin = %admin.user.id, sent, "dead letters replayed from the console");
    let notice = format!(
        "Replayed {sent} letter{} onto {}.",
        if sent == 1 { "" } else { "s" },
        kafka.topic
    );
    dlq_page(&state, &admin, filter, Some(notice)).await
}

#[derive(Template)]
#[template(path = "console_traces.html")]
struct TracesPage {
    chrome: Chrome,
    traces: Vec<crate::traces::TraceSummary>,
    capacity: usize,
}

/// `GET /console/traces`: the traces kept, newest first.
pub async fn traces(State(state): State<AppState>, admin: Admin) -> Response {
    render(&TracesPage {
        chrome: Chrome::new(&admin.visitor, "Traces"),
        traces: state.console.traces.recent(200),
        capacity: state.console.trace_capacity,
    })
}

/// A span as the waterfall draws it: its bar's place in per mille of the
/// trace's duration.
#[derive(Debug, Clone)]
pub struct Bar {
    pub depth: usize,
    pub y: usize,
    pub x: u64,
    pub width: u64,
    pub lane: String,
    pub label: String,
    pub duration: String,
    pub offset: String,
    pub error: bool,
    pub attributes: String,
}

#[derive(Template)]
#[template(path = "console_trace.html")]
struct TracePage {
    chrome: Chrome,
    trace_id: String,
    found: bool,
    services: Vec<String>,
    bars: Vec<Bar>,
    height: usize,
    total: String,
    dropped: usize,
}

/// Where each span's bar goes (1000 = the whole trace).
pub fn bars(trace: &crate::traces::Trace) -> Vec<Bar> {
    let start = trace.start_ns();
    let total = trace.end_ns().saturating_sub(start).max(1);
    trace
        .waterfall()
        .into_iter()
        .enumerate()
        .map(|(row, (depth, span)): (usize, (usize, &Span))| {
            let x = (span.start_ns - start) * 1000 / total;
            let width = ((span.end_ns - span.start_ns) * 1000 / total).max(2);
            Bar {
                depth,
                y: row * 22 + 4,
                x: 340 + x * 55 / 100,
                width: (width * 55 / 100).max(2),
                lane: span.service.clone(),
                label: format!(
                    "{}{} {}",
                    "· ".repeat(depth.min(8)),
                    span.service,
                    span.name
                ),
                duration: format!("{:.2} ms", span.duration_ms()),
                offset: format!("+{:.2} ms", (span.start_ns - start) as f64 / 1e6),
                error: span.error,
                attributes: span
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        })
        .collect()
}

/// `GET /console/traces/{id}`: one trace's waterfall.
pub async fn trace(
    State(state): State<AppState>,
    admin: Admin,
    axum::extract::Path(trace_id): axum::extract::Path<String>,
) -> Result<Response, PageError> {
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PageError::NotFound(format!(
            "{trace_id:?} is not a trace id (32 hex digits)."
        )));
    }
    if let Some(jaeger) = &state.jaeger_url {
        return Ok(Redirect::to(&format!("{jaeger}/trace/{trace_id}")).into_response());
    }
    let trace = state.console.traces.get(&trace_id);
    let (bars, services, total, dropped) = match &trace {
        Some(t) => (
            bars(t),
            t.services(),
            format!(
                "{:.2} ms",
                t.end_ns().saturating_sub(t.start_ns()) as f64 / 1e6
            ),
            t.dropped,
        ),
        None => (Vec::new(), Vec::new(), String::new(), 0),
    };
    Ok(render(&TracePage {
        chrome: Chrome::new(&admin.visitor, format!("Trace {trace_id}")),
        found: trace.is_some(),
        height: bars.len() * 22 + 8,
        trace_id,
        services,
        bars,
        total,
        dropped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_service::model::OrderStatus;
    use order_service::timeline::{CauseKind, Step, StepKind};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn entry(offset: i64, ms: i64, event_type: &str, order: &str) -> Arc<Entry> {
        Arc::new(Entry {
            partition: 2,
            offset,
            at: Some(at(ms)),
            order: Some(order.into()),
            event_type: Some(event_type.into()),
            event_id: Some(format!("e{offset}")),
            signed_by: Some("k".into()),
            trace_id: Some("t".repeat(32)),
            line: String::new(),
        })
    }

    #[test]
    fn the_swimlane_puts_each_step_and_event_in_its_service_by_time() {
        let step = |ms, kind| Step {
            seq: ms,
            step: kind,
            at: at(ms),
            cause: CauseKind::Request,
            event_id: None,
            event_type: None,
            trace_id: Some("a".repeat(32)),
            detail: None,
        };
        let timeline = Timeline {
            order_id: OrderId::new(7).unwrap(),
            status: OrderStatus::Paid,
            steps: vec![
                step(0, StepKind::Placed),
                step(10, StepKind::StockReserved),
                step(50, StepKind::Paid),
            ],
        };
        let events = [
            entry(3, 20, "order_created", "7"),
            entry(4, 40, "payment_success", "7"),
        ];
        let rows = swimlane(&|t| format!("/t/{t}"), &timeline, &events, &[]);
        let lanes: Vec<(Lane, &str)> = rows.iter().map(|r| (r.lane, r.title.as_str())).collect();
        assert_eq!(
            lanes,
            [
                (Lane::Order, "Order placed"),
                (Lane::Product, "Stock reserved"),
                (Lane::Order, "On the topic: order_created"),
                (Lane::Payment, "On the topic: payment_success"),
                (Lane::Order, "Paid"),
            ]
        );
        assert!(
            rows[2]
                .facts
                .contains(&("partition@offset".into(), "2@3".into()))
        );
        assert_eq!(
            rows[0].trace.as_ref().map(|(link, _)| link.as_str()),
            Some(format!("/t/{}", "a".repeat(32)).as_str())
        );
    }

    #[test]
    fn the_latest_orders_are_each_order_once_with_its_newest_event() {
        let newest_first = [
            entry(9, 90, "order_confirmed", "2"),
            entry(8, 80, "order_created", "3"),
            entry(7, 70, "payment_success", "2"),
        ];
        let orders = latest_orders(&newest_first, 10);
        assert_eq!(
            orders
                .iter()
                .map(|o| (o.order.as_str(), o.last_event.as_str()))
                .collect::<Vec<_>>(),
            [("2", "order_confirmed"), ("3", "order_created")]
        );
        assert_eq!(latest_orders(&newest_first, 1).len(), 1);
    }
}
