//! `meshctl authz explain`: the route a request would match and the
//! authorization rule that would decide it, computed by the data plane's
//! own decision function on the published snapshot — no traffic sent.

use std::net::IpAddr;

use dataplane::route::authz::{
    Asked, Caller, Headers, Stage, Verdict, authorize_connection, authorize_request,
};
use dataplane::route::{Protocol, RouteTarget, Snapshot};
use serde_json::{Value, json};

use super::Gateway;
use crate::error::DaemonError;

/// The request to explain, as the control socket sends it.
#[derive(Debug, Clone)]
pub struct ExplainQuery {
    pub listener: String,
    pub spiffe_id: Option<String>,
    /// Default: whether a SPIFFE ID was given.
    pub authenticated: Option<bool>,
    /// Default `127.0.0.1`.
    pub source: Option<String>,
    /// Default `GET`.
    pub method: Option<String>,
    /// Default `/` (a query is ignored, as for requests).
    pub path: Option<String>,
    pub host: Option<String>,
    /// `"name: value"`.
    pub headers: Vec<String>,
}

/// Header lines given as `name: value`.
struct Given(Vec<(String, String)>);

impl Headers for Given {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

impl Gateway {
    /// `authz_explain`.
    pub fn authz_explain(&self, q: &ExplainQuery) -> Result<Value, DaemonError> {
        explain(&self.snapshots.load(), q)
    }
}

fn explain(snapshot: &Snapshot, q: &ExplainQuery) -> Result<Value, DaemonError> {
    let rejected = |m: String| DaemonError::Rejected(m);
    let listener = snapshot.listener(&q.listener).ok_or_else(|| {
        let known: Vec<&str> = snapshot.listeners.iter().map(|l| l.name.as_str()).collect();
        rejected(format!(
            "listener: no listener \"{}\" (known: {})",
            q.listener,
            known.join(", ")
        ))
    })?;
    let source: IpAddr = q
        .source
        .as_deref()
        .unwrap_or("127.0.0.1")
        .parse()
        .map_err(|_| rejected(format!("source: {:?} is not an IP address", q.source)))?;
    let mut headers = Vec::new();
    for h in &q.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| rejected(format!("headers: {h:?} is not \"name: value\"")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let caller = Caller {
        spiffe_id: q.spiffe_id.as_deref(),
        authenticated: q.authenticated.unwrap_or(q.spiffe_id.is_some()),
        source,
    };
    let method = q.method.as_deref().unwrap_or("GET");
    let target = q.path.as_deref().unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let (route, verdict, stage) = match listener.protocol {
        Protocol::Http => {
            let headers = Given(headers);
            let asked = Asked {
                method,
                path,
                headers: &headers,
            };
            let a = authorize_request(listener, q.host.as_deref(), &caller, &asked);
            (a.route, a.verdict, a.stage)
        }
        Protocol::Tcp => {
            let (verdict, stage) = authorize_connection(listener, &caller);
            (
                Some(0).filter(|_| !listener.routes.is_empty()),
                verdict,
                stage,
            )
        }
    };
    let route_json = route.map(|i| {
        let r = &listener.routes[i];
        let clusters: Vec<&str> = r
            .target
            .clusters()
            .map(|c| snapshot.cluster(c).name.as_str())
            .collect();
        json!({
            "name": r.name,
            "clusters": clusters,
            "redirect": matches!(r.target, RouteTarget::Redirect(_)),
        })
    });
    let (decision, rule, outcome) = match &verdict {
        Verdict::Deny(rule) => ("deny", Some(rule.to_string()), "403 forbidden".to_owned()),
        Verdict::Allow(rule) => (
            "allow",
            rule.as_ref().map(|r| r.to_string()),
            match (listener.protocol, route) {
                (Protocol::Tcp, _) => "relayed".to_owned(),
                (Protocol::Http, None) => "404 no route".to_owned(),
                (Protocol::Http, Some(i)) => match listener.routes[i].target {
                    RouteTarget::Redirect(_) => "redirected".to_owned(),
                    _ => "proxied".to_owned(),
                },
            },
        ),
    };
    Ok(json!({
        "listener": listener.name,
        "caller": {
            "spiffe_id": q.spiffe_id,
            "authenticated": caller.authenticated,
            "source": source.to_string(),
        },
        "request": match listener.protocol {
            Protocol::Http => json!({ "method": method, "path": path, "host": q.host }),
            Protocol::Tcp => Value::Null,
        },
        "route": route_json,
        "decision": decision,
        "rule": rule,
        "stage": match stage { Stage::Listener => "listener", Stage::Route => "route" },
        "outcome": outcome,
    }))
}
