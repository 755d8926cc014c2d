//! Validation of `[tracing]`: the sampling share, the propagation list,
//! the collectors' URLs and timeouts, the service name and the force
//! header's name.

use super::problem::Problem;
use super::schema::{TracingConfig, is_token};
use crate::trace_export::Endpoint;

/// Longest export timeout: a minute (the exporter posts a batch at a time).
const MAX_EXPORT_TIMEOUT_MS: u64 = 60_000;

/// Checks `t` (the `[tracing]` table).
pub(super) fn check(t: &TracingConfig, out: &mut Vec<Problem>) {
    let mut push = |path: &str, message: String| {
        out.push(Problem {
            path: format!("tracing.{path}"),
            message,
        })
    };
    let pct = t.sample_percent.0;
    if !(0.0..=100.0).contains(&pct) {
        push(
            "sample_percent",
            format!("{pct} is out of range (0 to 100)"),
        );
    }
    if t.propagation.is_empty() {
        push(
            "propagation",
            "name at least one format: \"w3c\", \"b3\"".into(),
        );
    }
    for (i, p) in t.propagation.iter().enumerate() {
        if t.propagation[..i].contains(p) {
            push(
                &format!("propagation[{i}]"),
                format!("{p:?} is listed twice"),
            );
        }
    }
    let name = &t.service_name;
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        push(
            "service_name",
            "must be 1..=255 characters, none a control character".into(),
        );
    }
    if !t.force_header.is_empty() && !is_token(&t.force_header) {
        push(
            "force_header",
            format!("{:?} is not a header name", t.force_header),
        );
    }
    let collectors = [
        ("otlp", t.otlp.as_ref().map(|o| (&o.endpoint, o.timeout_ms))),
        (
            "zipkin",
            t.zipkin.as_ref().map(|z| (&z.endpoint, z.timeout_ms)),
        ),
    ];
    for (key, collector) in collectors {
        let Some((url, timeout_ms)) = collector else {
            continue;
        };
        if let Err(e) = Endpoint::parse(url) {
            push(&format!("{key}.endpoint"), e);
        }
        if !(1..=MAX_EXPORT_TIMEOUT_MS).contains(&timeout_ms) {
            push(
                &format!("{key}.timeout_ms"),
                format!("{timeout_ms} is out of range (1 to {MAX_EXPORT_TIMEOUT_MS})"),
            );
        }
    }
}
