//! Validation of `authz` rules (listeners and routes): names, trust
//! domains, methods, paths and header names; request conditions refused
//! where there is no request (TCP listeners). SPIFFE ID patterns and
//! address ranges are already checked as they are read (`schema`).

use std::collections::HashSet;

use super::problem::Problem;
use super::schema::{AuthzConfig, AuthzRuleConfig, is_tchar, is_token};

/// Checks `authz` at `at` (`listeners[0].authz`); `tcp`: the rules decide
/// connections, which have no method, path or headers.
pub(super) fn check(at: &str, authz: &AuthzConfig, tcp: bool, out: &mut Vec<Problem>) {
    let mut push = |path: String, message: String| out.push(Problem { path, message });
    let mut names = HashSet::new();
    for (kind, rules) in [("allow", &authz.allow), ("deny", &authz.deny)] {
        for (k, rule) in rules.iter().enumerate() {
            let at = format!("{at}.{kind}[{k}]");
            if let Some(name) = &rule.name {
                if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                    push(
                        format!("{at}.name"),
                        "must be 1..=128 characters, none a control character".into(),
                    );
                } else if !names.insert(name.clone()) {
                    push(
                        format!("{at}.name"),
                        format!("duplicate rule name \"{name}\" in this authz table"),
                    );
                }
            }
            check_rule(&at, rule, tcp, &mut push);
        }
    }
}

fn check_rule(at: &str, rule: &AuthzRuleConfig, tcp: bool, push: &mut impl FnMut(String, String)) {
    for (k, td) in rule.trust_domain.iter().enumerate() {
        let ok = !td.is_empty()
            && td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !ok {
            push(
                format!("{at}.trust_domain[{k}]"),
                format!(
                    "\"{td}\" is not a trust domain (lowercase letters, digits, '-', '.', '_')"
                ),
            );
        }
    }
    for (k, m) in rule.methods.iter().enumerate() {
        if !is_token(m) {
            push(
                format!("{at}.methods[{k}]"),
                format!("\"{m}\" is not a method name"),
            );
        }
    }
    for (field, paths) in [
        ("path_prefix", &rule.path_prefix),
        ("path_exact", &rule.path_exact),
    ] {
        for (k, path) in paths.iter().enumerate() {
            if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
                push(
                    format!("{at}.{field}[{k}]"),
                    format!(
                        "\"{path}\" must start with \"/\" and have no space or control character"
                    ),
                );
            }
        }
    }
    for (name, value) in &rule.headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            push(
                format!("{at}.headers"),
                format!("\"{name}\" is not a header name"),
            );
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            push(
                format!("{at}.headers.{name}"),
                "the value has a control character".into(),
            );
        }
    }
    if tcp {
        for (field, set) in [
            ("methods", !rule.methods.is_empty()),
            ("path_prefix", !rule.path_prefix.is_empty()),
            ("path_exact", !rule.path_exact.is_empty()),
            ("headers", !rule.headers.is_empty()),
        ] {
            if set {
                push(
                    format!("{at}.{field}"),
                    format!(
                        "a tcp connection has no {field}: a rule of a tcp listener or its route may use spiffe_id, trust_domain, authenticated and source"
                    ),
                );
            }
        }
    }
}
