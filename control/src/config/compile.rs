//! Compiles a validated [`Config`] into the data plane's immutable
//! [`Snapshot`]: clusters become [`ClusterId`]s (their index in file order),
//! each listener gets its routes in file order, TLS files are loaded.

use std::collections::HashMap;
use std::time::Duration;

use dataplane::route::{
    Cluster, ClusterId, HostMatch, HttpLimits, LbPolicy, Listener, PathMatch, PoolSettings,
    Protocol, Route, RouteMatch, Snapshot,
};
use dataplane::tls::{ClientAuth, ServerTls, ServerTlsSettings, TlsVersion};

use super::schema::{
    ClientAuthConfig, Config, LbPolicyConfig, ListenerConfig, ListenerProtocol, MatchConfig,
    MinVersion, TlsConfig,
};
use super::tls_build;
use super::validate::Problem;

/// Builds the snapshot; the config must have passed `validate::check`.
/// Collects every TLS failure rather than stopping at the first.
pub(super) fn compile(config: &Config, generation: u64) -> Result<Snapshot, Vec<Problem>> {
    let clusters: Vec<Cluster> = config
        .clusters
        .iter()
        .map(|c| Cluster {
            name: c.name.clone(),
            endpoints: c.endpoints.clone(),
            rotation: c.endpoints.clone(),
            lb: match c.lb {
                LbPolicyConfig::RoundRobin => LbPolicy::RoundRobin,
                LbPolicyConfig::LeastRequest => LbPolicy::LeastRequest,
            },
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            pool: PoolSettings {
                max_idle_per_endpoint: c.pool.max_idle_per_endpoint,
                idle_timeout: Duration::from_millis(c.pool.idle_timeout_ms),
            },
        })
        .collect();
    let ids: HashMap<&str, ClusterId> = config
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), cluster_id(i)))
        .collect();

    let mut problems = Vec::new();
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
        let routes = config
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.listener == l.name)
            .enumerate()
            .map(|(n, (r_idx, r))| {
                let cluster = ids
                    .get(r.cluster.as_str())
                    .copied()
                    .ok_or_else(|| Problem {
                        path: format!("routes[{r_idx}].cluster"),
                        message: format!("unknown cluster \"{}\"", r.cluster),
                    })?;
                Ok(Route {
                    name: r.name.clone().unwrap_or_else(|| format!("{}#{n}", l.name)),
                    matcher: route_match(&r.matcher),
                    cluster,
                    timeout: Duration::from_millis(r.timeout_ms),
                })
            })
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
            },
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Snapshot {
        generation,
        listeners,
        clusters,
    })
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
    }
}

/// Checks that the files can be read (for a message naming the config field),
/// then asks the TLS stage to build the config.
fn build_tls(i: usize, l: &ListenerConfig, t: &TlsConfig) -> Result<ServerTls, Vec<Problem>> {
    let mut problems = Vec::new();
    let files = [
        ("cert", Some(&t.cert)),
        ("key", Some(&t.key)),
        ("client_ca", t.client_ca.as_ref()),
    ];
    for (field, path) in files {
        let Some(path) = path else { continue };
        let why = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => continue,
            Ok(_) => "not a regular file".to_owned(),
            Err(e) => e.to_string(),
        };
        problems.push(Problem {
            path: format!("listeners[{i}].tls.{field}"),
            message: format!("cannot read \"{}\": {why}", path.display()),
        });
    }
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
