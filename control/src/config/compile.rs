//! Compiles a validated [`Config`] into the data plane's immutable
//! [`Snapshot`]: clusters become [`ClusterId`]s (their index in file order),
//! each listener gets its routes in file order, TLS files are loaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use dataplane::http::PathRules;
use dataplane::route::authz::{HeaderCondition, Policy, Rule};
use dataplane::route::{
    Cluster, ClusterId, ClusterLimits, Fault, HashOn, HeaderEdits, HostMatch, Http2Limits,
    HttpLimits, LbPolicy, Listener, PathMatch, PoolSettings, Protocol, RateKey, RateLimit,
    Redirect, RequestIdPolicy, RetryPolicy, Route, RouteMatch, RouteTarget, Snapshot, SplitTarget,
    Underscores, UpstreamProtocol,
};
use dataplane::telemetry::access_log::{AccessLogSpec, DEFAULT_TEMPLATE, LogFormat, Template};
use dataplane::telemetry::trace::{Propagation, TraceSpec};
use dataplane::tls::{
    ClientAuth, ClientTls, ClientTlsSettings, ServerTls, ServerTlsSettings, TlsVersion,
};
use dataplane::upstream::hash::{Maglev, RingHash};
use dataplane::upstream::outlier::OutlierSettings;
use dataplane::upstream::retry::{RetryBudget, RetryOn};

use super::problem::Problem;
use super::schema::{
    AccessLogConfig, AccessLogFormatConfig, AllUnhealthyConfig, AuthzConfig, AuthzRuleConfig,
    ClientAuthConfig, ClusterConfig, ClusterTlsConfig, Config, EncodedSlashesConfig, HashOnConfig,
    HeaderEditsConfig, LbPolicyConfig, ListenerConfig, ListenerProtocol, MatchConfig, MinVersion,
    OtlpEncoding, PropagationConfig, RateKeyConfig, RequestIdConfig, RouteConfig, TlsConfig,
    TracingConfig, UnderscoresConfig, UpstreamProtocolConfig, route_name,
};
use super::tls_build;
use crate::trace_export::{Collector, Endpoint, ExportSettings, Format};

/// Builds the snapshot; the config must have passed `validate::check`.
/// Collects every TLS failure rather than stopping at the first.
pub(super) fn compile(config: &Config, generation: u64) -> Result<Snapshot, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut clusters: Vec<Cluster> = config.clusters.iter().map(cluster).collect();
    for (i, (c, compiled)) in config.clusters.iter().zip(&mut clusters).enumerate() {
        if let Some(t) = &c.tls {
            match build_cluster_tls(i, c, t) {
                Ok(tls) => compiled.tls = Some(tls),
                Err(mut p) => problems.append(&mut p),
            }
        }
    }
    let ids: HashMap<&str, ClusterId> = config
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), cluster_id(i)))
        .collect();

    let mut listeners = Vec::with_capacity(config.listeners.len());
    for (i, l) in config.listeners.iter().enumerate() {
        let tls = match &l.tls {
            None => None,
            Some(t) => match build_tls(i, l, t) {
                Ok(tls) => Some(tls),
                Err(mut p) => {
                    problems.append(&mut p);
                    None
                }
            },
        };
        let access_log = match l.access_log.as_ref().map(|c| access_log(i, c)).transpose() {
            Ok(spec) => spec,
            Err(p) => {
                problems.push(p);
                None
            }
        };
        let routes = config
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.listener == l.name)
            .enumerate()
            .map(|(n, (r_idx, r))| route(r, r_idx, n, &ids))
            .collect::<Result<Vec<_>, Problem>>();
        let routes = routes.unwrap_or_else(|p| {
            problems.push(p);
            Vec::new()
        });
        listeners.push(Listener {
            name: l.name.clone(),
            address: l.address,
            protocol: match l.protocol {
                ListenerProtocol::Http => Protocol::Http,
                ListenerProtocol::Tcp => Protocol::Tcp,
            },
            tls,
            routes,
            limits: HttpLimits {
                max_header_bytes: l.max_header_bytes,
                header_timeout: Duration::from_millis(l.header_timeout_ms),
                idle_timeout: Duration::from_millis(l.idle_timeout_ms),
                max_connections: l.max_connections,
                underscores: match l.headers_with_underscores {
                    UnderscoresConfig::Allow => Underscores::Allow,
                    UnderscoresConfig::Drop => Underscores::Drop,
                    UnderscoresConfig::Reject => Underscores::Reject,
                },
                paths: PathRules {
                    normalize: l.normalize_path,
                    merge_slashes: l.merge_slashes,
                    reject_encoded_slashes: l.encoded_slashes == EncodedSlashesConfig::Reject,
                },
                max_connections_per_source: l.max_connections_per_source,
                max_connections_per_identity: l.max_connections_per_identity,
                max_header_count: l.max_header_count,
                min_body_rate: l.min_body_rate,
                min_body_rate_grace: Duration::from_millis(l.min_body_rate_grace_ms),
                request_id: match l.request_id {
                    RequestIdConfig::Keep => RequestIdPolicy::Keep,
                    RequestIdConfig::Fresh => RequestIdPolicy::Fresh,
                    RequestIdConfig::Mesh => RequestIdPolicy::Mesh,
                },
                http2: Http2Limits {
                    max_concurrent_streams: l.http2.max_concurrent_streams,
                    max_header_list_bytes: l.http2.max_header_list_bytes,
                    max_pending_accept_resets: l.http2.max_pending_accept_resets,
                    max_local_error_resets: l.http2.max_local_error_resets,
                    initial_stream_window: l.http2.initial_stream_window,
                    initial_connection_window: l.http2.initial_connection_window,
                    max_control_frames_per_second: l.http2.max_control_frames_per_second,
                    max_consecutive_empty_frames: l.http2.max_consecutive_empty_frames,
                    h2c: l.http2.h2c,
                },
            },
            authz: policy(&format!("listener {}", l.name), &l.authz),
            access_log,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Snapshot {
        generation,
        listeners,
        clusters,
        tracing: config.tracing.as_ref().map(|t| Arc::new(trace_spec(t))),
    })
}

/// What shards need of `[tracing]`.
fn trace_spec(t: &TracingConfig) -> TraceSpec {
    TraceSpec {
        sample_percent: t.sample_percent.0,
        propagation: t
            .propagation
            .iter()
            .map(|p| match p {
                PropagationConfig::W3c => Propagation::W3c,
                PropagationConfig::B3 => Propagation::B3,
            })
            .collect(),
        force_header: (!t.force_header.is_empty()).then(|| t.force_header.to_ascii_lowercase()),
        records: t.otlp.is_some() || t.zipkin.is_some(),
    }
}

/// Where `[tracing]` sends spans. Endpoints were checked by validation; one
/// that does not parse (a config built in code) is left out.
pub(super) fn export_settings(t: Option<&TracingConfig>) -> ExportSettings {
    let Some(t) = t else {
        return ExportSettings::default();
    };
    let mut collectors = Vec::new();
    if let Some(o) = &t.otlp
        && let Ok(endpoint) = Endpoint::parse(&o.endpoint)
    {
        collectors.push(Collector {
            endpoint,
            format: match o.encoding {
                OtlpEncoding::Protobuf => Format::OtlpProtobuf,
                OtlpEncoding::Json => Format::OtlpJson,
            },
            timeout: Duration::from_millis(o.timeout_ms),
        });
    }
    if let Some(z) = &t.zipkin
        && let Ok(endpoint) = Endpoint::parse(&z.endpoint)
    {
        collectors.push(Collector {
            endpoint,
            format: Format::Zipkin,
            timeout: Duration::from_millis(z.timeout_ms),
        });
    }
    ExportSettings {
        service_name: t.service_name.clone(),
        collectors,
    }
}

/// A cluster as the data plane runs it.
fn cluster(c: &ClusterConfig) -> Cluster {
    let mut cluster = Cluster::new(&c.name, c.endpoints.clone());
    if !c.weights.is_empty() {
        cluster.weights = c.weights.clone();
    }
    let hash_on = match &c.hash_on {
        HashOnConfig::ClientIp => HashOn::ClientIp,
        HashOnConfig::Header(name) => HashOn::Header(name.clone()),
        HashOnConfig::Cookie(name) => HashOn::Cookie(name.clone()),
    };
    cluster.lb = match c.lb {
        LbPolicyConfig::RoundRobin => LbPolicy::RoundRobin,
        LbPolicyConfig::WeightedRoundRobin => LbPolicy::WeightedRoundRobin,
        LbPolicyConfig::LeastRequest => LbPolicy::LeastRequest,
        LbPolicyConfig::RingHash => LbPolicy::RingHash {
            on: hash_on,
            ring: Arc::new(RingHash::build(
                &c.endpoints,
                &cluster.weights,
                RingHash::DEFAULT_MIN_RING_SIZE,
            )),
        },
        LbPolicyConfig::Maglev => LbPolicy::Maglev {
            on: hash_on,
            table: Arc::new(Maglev::build(
                &c.endpoints,
                &cluster.weights,
                Maglev::DEFAULT_TABLE_SIZE,
            )),
        },
    };
    cluster.panic_when_all_unhealthy = c.all_unhealthy == AllUnhealthyConfig::Panic;
    cluster.connect_timeout = Duration::from_millis(c.connect_timeout_ms);
    cluster.protocol = match c.protocol {
        UpstreamProtocolConfig::Http1 => UpstreamProtocol::Http1,
        UpstreamProtocolConfig::H2 => UpstreamProtocol::H2,
        UpstreamProtocolConfig::H2c => UpstreamProtocol::H2c,
    };
    cluster.pool = PoolSettings {
        max_idle_per_endpoint: c.pool.max_idle_per_endpoint,
        idle_timeout: Duration::from_millis(c.pool.idle_timeout_ms),
    };
    cluster.outlier = c.outlier.as_ref().map(|o| OutlierSettings {
        consecutive_failures: o.consecutive_failures,
        base_ejection: Duration::from_millis(o.base_ejection_ms),
        max_ejection: Duration::from_millis(o.max_ejection_ms),
        max_ejection_percent: o.max_ejection_percent.min(100) as u8,
    });
    cluster.limits = ClusterLimits {
        max_connections: c.limits.max_connections,
        max_pending: c.limits.max_pending,
        max_requests: c.limits.max_requests,
        max_retries: c.limits.max_retries,
        retry_budget: RetryBudget {
            percent: c.retry_budget.percent,
            min_concurrent: c.retry_budget.min_concurrent,
        },
    };
    cluster.update_rotation();
    cluster
}

/// A route as the data plane runs it; `n` counts the listener's routes.
fn route(
    r: &RouteConfig,
    r_idx: usize,
    n: usize,
    ids: &HashMap<&str, ClusterId>,
) -> Result<Route, Problem> {
    let id = |name: &str, field: String| {
        ids.get(name).copied().ok_or_else(|| Problem {
            path: field,
            message: format!("unknown cluster \"{name}\""),
        })
    };
    let target = match (&r.cluster, &r.split, &r.redirect) {
        (Some(c), _, _) => RouteTarget::Cluster(id(c, format!("routes[{r_idx}].cluster"))?),
        (None, Some(split), _) => RouteTarget::Split(
            split
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    Ok(SplitTarget {
                        cluster: id(&s.cluster, format!("routes[{r_idx}].split[{k}].cluster"))?,
                        weight: s.weight,
                    })
                })
                .collect::<Result<_, Problem>>()?,
        ),
        (None, None, Some(rd)) => RouteTarget::Redirect(Redirect {
            status: rd.status,
            scheme: rd.scheme.clone(),
            host: rd.host.clone(),
            path: rd.path.clone(),
        }),
        (None, None, None) => {
            return Err(Problem {
                path: format!("routes[{r_idx}]"),
                message: "needs one of cluster, split or redirect".into(),
            });
        }
    };
    let name = route_name(r, n);
    let mut route = Route::to_cluster(&name, route_match(&r.matcher), ClusterId(0));
    route.target = target;
    route.timeout = Duration::from_millis(r.timeout_ms);
    route.retry = r.retry.as_ref().map(|rt| RetryPolicy {
        attempts: rt.attempts,
        on: rt.on.iter().fold(RetryOn::NONE, |all, c| all.union(c.0)),
        per_try_timeout: rt.per_try_timeout_ms.map(Duration::from_millis),
        backoff_base: Duration::from_millis(rt.backoff_base_ms),
        backoff_max: Duration::from_millis(rt.backoff_max_ms),
        buffer_bytes: rt.buffer_bytes,
    });
    route.rate_limit = r.rate_limit.as_ref().map(|l| RateLimit {
        rps: f64::from(l.rps),
        burst: f64::from(l.burst.unwrap_or(l.rps)),
        key: match &l.key {
            RateKeyConfig::Route => RateKey::Route,
            RateKeyConfig::SpiffeId => RateKey::SpiffeId,
            RateKeyConfig::Header(name) => RateKey::Header(name.clone()),
        },
    });
    route.request_headers = header_edits(&r.request_headers);
    if let Some(host) = &r.host_rewrite {
        route
            .request_headers
            .set
            .push(("host".into(), host.clone()));
    }
    route.response_headers = header_edits(&r.response_headers);
    route.prefix_rewrite = match (&r.prefix_rewrite, &r.matcher.path_prefix) {
        (Some(with), Some(prefix)) => Some((prefix.clone(), with.clone())),
        // Validation refuses a rewrite without the prefix it replaces.
        (None, _) | (Some(_), None) => None,
    };
    route.authz = policy(&format!("route {name}"), &r.authz);
    route.fault = r.fault.as_ref().map(|f| Fault {
        abort_percent: f.abort_percent,
        abort_status: f.abort_status,
        delay_percent: f.delay_percent,
        delay: Duration::from_millis(f.delay_ms),
    });
    Ok(route)
}

/// The policy of `scope` (`listener NAME` / `route NAME`): rules named by
/// their `name`, else by their place (`route orders allow[0]`).
/// Listener `i`'s `access_log` table.
fn access_log(i: usize, c: &AccessLogConfig) -> Result<Arc<AccessLogSpec>, Problem> {
    let format = match c.format {
        AccessLogFormatConfig::Json => LogFormat::Json,
        AccessLogFormatConfig::Text => {
            let text = c.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
            LogFormat::Template(Template::parse(text).map_err(|message| Problem {
                path: format!("listeners[{i}].access_log.template"),
                message,
            })?)
        }
    };
    Ok(Arc::new(AccessLogSpec {
        path: c.path.to_string_lossy().into_owned(),
        format,
        sample_percent: c.sample_percent.0,
    }))
}

fn policy(scope: &str, authz: &AuthzConfig) -> Policy {
    let rules = |kind: &str, rules: &[AuthzRuleConfig]| -> Vec<Rule> {
        rules
            .iter()
            .enumerate()
            .map(|(k, r)| Rule {
                name: Arc::from(
                    r.name
                        .clone()
                        .unwrap_or_else(|| format!("{scope} {kind}[{k}]")),
                ),
                spiffe_ids: r.spiffe_id.clone(),
                trust_domains: r.trust_domain.clone(),
                authenticated: r.authenticated,
                sources: r.source.clone(),
                methods: r.methods.clone(),
                paths: r
                    .path_prefix
                    .iter()
                    .map(|p| PathMatch::Prefix(p.clone()))
                    .chain(r.path_exact.iter().map(|p| PathMatch::Exact(p.clone())))
                    .collect(),
                headers: r
                    .headers
                    .iter()
                    .map(|(name, value)| HeaderCondition {
                        name: name.to_ascii_lowercase(),
                        value: (value != "*").then(|| value.clone()),
                    })
                    .collect(),
            })
            .collect()
    };
    Policy {
        allow: rules("allow", &authz.allow),
        deny: rules("deny", &authz.deny),
        default_name: Arc::from(format!("{scope}: no allow rule")),
    }
}

fn header_edits(e: &HeaderEditsConfig) -> HeaderEdits {
    let lower = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    HeaderEdits {
        add: lower(&e.add),
        set: lower(&e.set),
        remove: e.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
    }
}

fn cluster_id(index: usize) -> ClusterId {
    // A config with more than u32::MAX clusters cannot be read into memory.
    ClusterId(u32::try_from(index).unwrap_or(u32::MAX))
}

/// The matcher a shard runs; `m` is normalized (lowercase host, uppercase
/// methods) and validated.
pub(super) fn route_match(m: &MatchConfig) -> RouteMatch {
    let host = m.host.as_deref().map(|h| {
        let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
            None => HostMatch::Exact(h),
        }
    });
    let path = match (&m.path_exact, &m.path_prefix) {
        (Some(p), _) => Some(PathMatch::Exact(p.clone())),
        (None, Some(p)) => Some(PathMatch::Prefix(p.clone())),
        (None, None) => None,
    };
    RouteMatch {
        host,
        path,
        methods: m.methods.iter().map(|s| s.to_ascii_uppercase()).collect(),
    }
}

/// The settings handed to the TLS stage (paths already absolute).
pub(super) fn tls_settings(l: &ListenerConfig, t: &TlsConfig) -> ServerTlsSettings {
    ServerTlsSettings {
        cert: t.cert.clone(),
        key: t.key.clone(),
        client_ca: t.client_ca.clone(),
        client_auth: match t.effective_client_auth() {
            ClientAuthConfig::Require => ClientAuth::Require,
            ClientAuthConfig::Optional => ClientAuth::Optional,
            ClientAuthConfig::None => ClientAuth::None,
        },
        min_version: match t.min_version {
            MinVersion::Tls12 => TlsVersion::Tls12,
            MinVersion::Tls13 => TlsVersion::Tls13,
        },
        session_tickets: t.session_tickets,
        groups: t.groups.clone(),
        alpn: t.effective_alpn(l.protocol),
        crls: t.crl.clone(),
        trust_domains: t
            .trust_domains
            .iter()
            .map(|d| (d.name.clone(), d.ca.clone()))
            .collect(),
    }
}

/// A problem per file that is missing or not a regular file, naming
/// `{at}.{field}`.
fn unreadable_files<'a>(
    at: &str,
    files: impl IntoIterator<Item = (String, Option<&'a PathBuf>)>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (field, path) in files {
        let Some(path) = path else { continue };
        let why = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => continue,
            Ok(_) => "not a regular file".to_owned(),
            Err(e) => e.to_string(),
        };
        problems.push(Problem {
            path: format!("{at}.{field}"),
            message: format!("cannot read \"{}\": {why}", path.display()),
        });
    }
    problems
}

/// A cluster's `[clusters.tls]`: files checked (naming the field), then
/// the TLS stage builds the client config.
fn build_cluster_tls(
    i: usize,
    c: &ClusterConfig,
    t: &ClusterTlsConfig,
) -> Result<ClientTls, Vec<Problem>> {
    let at = format!("clusters[{i}].tls");
    let files = [
        ("ca".to_owned(), Some(&t.ca)),
        ("cert".to_owned(), t.cert.as_ref()),
        ("key".to_owned(), t.key.as_ref()),
    ];
    let problems = unreadable_files(&at, files);
    if !problems.is_empty() {
        return Err(problems);
    }
    let settings = ClientTlsSettings {
        ca: t.ca.clone(),
        client_cert: t.cert.clone().zip(t.key.clone()),
        sni: t.sni.clone(),
        alpn: t.effective_alpn(c.protocol),
        verify_spiffe_id: t.verify_spiffe_id.clone(),
        min_version: match t.min_version {
            MinVersion::Tls12 => TlsVersion::Tls12,
            MinVersion::Tls13 => TlsVersion::Tls13,
        },
        session_resumption: t.session_resumption,
    };
    tls_build::build_client_tls(&settings).map_err(|e| {
        vec![Problem {
            path: at,
            message: e.to_string(),
        }]
    })
}

/// Checks that the files can be read (for a message naming the config field),
/// then asks the TLS stage to build the config.
fn build_tls(i: usize, l: &ListenerConfig, t: &TlsConfig) -> Result<ServerTls, Vec<Problem>> {
    let files = [
        ("cert", Some(&t.cert)),
        ("key", Some(&t.key)),
        ("client_ca", t.client_ca.as_ref()),
    ];
    let crls = t
        .crl
        .iter()
        .enumerate()
        .map(|(k, p)| (format!("crl[{k}]"), Some(p)));
    let files = files
        .map(|(f, p)| (f.to_owned(), p))
        .into_iter()
        .chain(crls);
    let problems = unreadable_files(&format!("listeners[{i}].tls"), files);
    if !problems.is_empty() {
        return Err(problems);
    }
    tls_build::build_tls(&tls_settings(l, t)).map_err(|e| {
        vec![Problem {
            path: format!("listeners[{i}].tls"),
            message: e.to_string(),
        }]
    })
}
