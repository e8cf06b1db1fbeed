//! The console's small charts: Prometheus range queries of the last 15
//! minutes drawn as SVG lines by the server (no chart library, no script):
//! orders per second by outcome, the saga's p50 and p99, the outbox backlog,
//! and the longest partition wait.

use serde_json::Value;

/// A chart: its title, its unit, and its queries, each with the label of
/// its series (empty: the series' own labels).
type ChartSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// What each chart asks Prometheus.
const CHARTS: &[ChartSpec] = &[
    (
        "Orders per second by outcome",
        "/s",
        &[("", "sum by (outcome) (rate(saga_outcomes_total[1m]))")],
    ),
    (
        "Saga duration",
        "s",
        &[
            (
                "p50",
                "histogram_quantile(0.5, sum by (le) (rate(saga_duration_seconds_bucket[1m])))",
            ),
            (
                "p99",
                "histogram_quantile(0.99, sum by (le) (rate(saga_duration_seconds_bucket[1m])))",
            ),
        ],
    ),
    (
        "Outbox backlog",
        "events",
        &[("", "sum by (service) (outbox_unsent_events)")],
    ),
    (
        "Longest partition wait",
        "s",
        &[(
            "",
            "max by (service) (kafka_consumer_partition_waiting_seconds)",
        )],
    ),
];
/// The window drawn, and the step between points.
const WINDOW_SECS: i64 = 15 * 60;
const STEP_SECS: i64 = 15;
/// The drawing's size (its viewBox).
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 80.0;

/// One series, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// `x,y x,y ...` in the viewBox.
    pub points: String,
    /// Its colour (`c0`..`c5`).
    pub class: String,
    /// Its last value, with the unit.
    pub last: String,
}

/// One chart, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub lines: Vec<Line>,
    /// The value at the top of the chart, with the unit.
    pub top: String,
    pub error: Option<String>,
}

/// A series: its label and its `(unix seconds, value)` points.
type Series = (String, Vec<(f64, f64)>);

/// Draws `series` over `[start, end]` seconds.
pub fn draw(title: &str, unit: &str, series: &[Series], start: f64, end: f64) -> Chart {
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if top > 0.0 { top * 1.1 } else { 1.0 };
    let span = (end - start).max(1.0);
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, (label, points))| Line {
            label: label.clone(),
            points: points
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| {
                    let x = (t - start) / span * WIDTH;
                    let y = HEIGHT - v / scale * HEIGHT;
                    format!("{x:.1},{y:.1}")
                })
                .collect::<Vec<_>>()
                .join(" "),
            class: format!("c{}", i % 6),
            last: points
                .last()
                .filter(|(_, v)| v.is_finite())
                .map_or("-".into(), |(_, v)| format!("{} {unit}", round(*v))),
        })
        .collect();
    Chart {
        title: title.into(),
        lines,
        top: format!("{} {unit}", round(scale)),
        error: None,
    }
}

fn round(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The series of a Prometheus range query's answer, labelled by their
/// metric labels (or `label`).
pub fn series_of(answer: &Value, label: &str) -> Vec<Series> {
    answer["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| {
                    let labels = r["metric"]
                        .as_object()
                        .map(|m| {
                            m.values()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    let name = match (label.is_empty(), labels.is_empty()) {
                        (false, _) => label.to_string(),
                        (true, false) => labels,
                        (true, true) => "all".to_string(),
                    };
                    let points = r["values"]
                        .as_array()
                        .map(|values| {
                            values
                                .iter()
                                .filter_map(|p| {
                                    let t = p.get(0)?.as_f64()?;
                                    let v = p.get(1)?.as_str()?.parse::<f64>().ok()?;
                                    Some((t, v))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (name, points)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The console's charts from the Prometheus at `prometheus` (none without one).
pub async fn saga_charts(http: &reqwest::Client, prometheus: Option<&str>) -> Vec<Chart> {
    let Some(prometheus) = prometheus else {
        return Vec::new();
    };
    let end = chrono::Utc::now().timestamp();
    let start = end - WINDOW_SECS;
    let charts = CHARTS.iter().map(|(title, unit, queries)| async move {
        let mut series = Vec::new();
        for (label, query) in *queries {
            let answer = http
                .get(format!("{prometheus}/api/v1/query_range"))
                .query(&[
                    ("query", query.to_string()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", STEP_SECS.to_string()),
                ])
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            let body = match answer {
                Ok(response) => response.json::<Value>().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match body {
                Ok(body) => series.extend(series_of(&body, label)),
                Err(e) => {
                    let mut chart = draw(title, unit, &[], start as f64, end as f64);
                    chart.error = Some(format!("Prometheus did not answer: {e}"));
                    return chart;
                }
            }
        }
        draw(title, unit, &series, start as f64, end as f64)
    });
    futures::future::join_all(charts).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_range_answer_becomes_lines_scaled_to_the_chart() {
        let answer = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"outcome": "paid"}, "values": [[100, "1"], [200, "3"]]},
            {"metric": {"outcome": "failed"}, "values": [[100, "0"], [200, "NaN"]]},
        ]}});
        let series = series_of(&answer, "");
        assert_eq!(series[0].0, "paid");
        assert_eq!(series[1].1.len(), 2);
        let chart = draw("Orders", "/s", &series, 100.0, 200.0);
        // The highest value (3) is drawn a tenth below the top.
        assert_eq!(chart.lines[0].points, "0.0,55.8 300.0,7.3");
        assert_eq!(chart.lines[0].last, "3.00 /s");
        assert_eq!(chart.lines[1].points, "0.0,80.0");
        assert_eq!(chart.lines[1].last, "-");
        assert_eq!(chart.top, "3.30 /s");
    }

    #[test]
    fn no_data_is_an_empty_chart_not_a_division_by_zero() {
        let chart = draw("Backlog", "events", &[], 0.0, 0.0);
        assert!(chart.lines.is_empty());
        assert_eq!(chart.top, "1.00 events");
        assert!(series_of(&json!({"status": "error"}), "p99").is_empty());
    }
}
