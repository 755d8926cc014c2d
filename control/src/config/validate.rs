//! Semantic validation and normalization of a parsed [`Config`]: every
//! cross-field rule, reporting all problems rather than the first.
//!
//! Normalization (done in the same pass, so the loaded `Config` shows what
//! will run): relative paths become absolute against the config's folder,
//! default route names are filled in, hosts are lowercased and methods
//! uppercased.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use super::problem::{Problem, Problems};
use super::schema::{
    ClientAuthConfig, ClusterConfig, Config, ListenerProtocol, MatchConfig, RateKeyConfig,
    RouteConfig, Stack, is_tchar, route_name,
};
use super::tls_build;

/// Longest accepted timeout: one day.
pub const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
/// Bounds of `listeners.max_header_bytes`.
pub const HEADER_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;
/// Longest accepted name (listener, route, cluster).
pub const MAX_NAME_LEN: usize = 128;

/// Makes relative paths absolute: `base_dir` joined (and made absolute
/// against the working directory if itself relative). Does not touch the
/// file system.
pub(super) fn resolve_path(base_dir: &Path, p: &Path) -> PathBuf {
    let joined = base_dir.join(p);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// Applies defaults that depend on other fields and resolves paths.
pub(super) fn normalize(config: &mut Config, base_dir: &Path) {
    if let Some(socket) = &mut config.control.socket {
        *socket = resolve_path(base_dir, socket);
    }
    for l in &mut config.listeners {
        if let Some(log) = &mut l.access_log
            && log.path != Path::new("stdout")
            && !log.path.as_os_str().is_empty()
        {
            log.path = resolve_path(base_dir, &log.path);
        }
        if let Some(tls) = &mut l.tls {
            tls.cert = resolve_path(base_dir, &tls.cert);
            tls.key = resolve_path(base_dir, &tls.key);
            if let Some(ca) = &mut tls.client_ca {
                *ca = resolve_path(base_dir, ca);
            }
            for crl in &mut tls.crl {
                *crl = resolve_path(base_dir, crl);
            }
            for d in &mut tls.trust_domains {
                d.ca = resolve_path(base_dir, &d.ca);
            }
        }
    }
    for c in &mut config.clusters {
        if let Some(tls) = &mut c.tls {
            tls.ca = resolve_path(base_dir, &tls.ca);
            for p in [&mut tls.cert, &mut tls.key].into_iter().flatten() {
                *p = resolve_path(base_dir, p);
            }
        }
    }
    let mut per_listener: HashMap<String, usize> = HashMap::new();
    for r in &mut config.routes {
        let n = per_listener.entry(r.listener.clone()).or_default();
        r.name = Some(route_name(r, *n));
        *n += 1;
        if let Some(h) = &mut r.matcher.host {
            h.make_ascii_lowercase();
        }
        for m in &mut r.matcher.methods {
            m.make_ascii_uppercase();
        }
        uppercase_authz_methods(&mut r.authz);
    }
    for l in &mut config.listeners {
        uppercase_authz_methods(&mut l.authz);
    }
}

/// Methods are case-sensitive (RFC 9110 §9.1); the config accepts any case
/// and means the standard, uppercase ones.
fn uppercase_authz_methods(authz: &mut super::schema::AuthzConfig) {
    for rule in authz.allow.iter_mut().chain(authz.deny.iter_mut()) {
        for m in &mut rule.methods {
            m.make_ascii_uppercase();
        }
    }
}

/// Every rule that spans fields; empty when the config is valid.
pub(super) fn check(config: &Config) -> Vec<Problem> {
    let mut p = Problems::default();
    if config.dataplane.stack == Stack::Userspace {
        p.push(
            "dataplane.stack",
            "stack \"userspace\" is not supported yet; use \"kernel\"",
        );
    }
    if let Some(t) = &config.tracing {
        super::validate_tracing::check(t, &mut p.0);
    }
    check_listeners(config, &mut p);
    check_clusters(config, &mut p);
    check_routes(config, &mut p);
    p.0
}

fn check_access_log(p: &mut Problems, at: &str, log: &super::schema::AccessLogConfig) {
    use super::schema::AccessLogFormatConfig;
    if log.path.as_os_str().is_empty() {
        p.push(format!("{at}.path"), "must be a file path or \"stdout\"");
    }
    match (&log.template, log.format) {
        (Some(_), AccessLogFormatConfig::Json) => p.push(
            format!("{at}.template"),
            "a template needs format = \"text\"",
        ),
        (Some(t), AccessLogFormatConfig::Text) => {
            if let Err(e) = dataplane::telemetry::access_log::Template::parse(t) {
                p.push(format!("{at}.template"), e);
            }
        }
        (None, _) => {}
    }
    let pct = log.sample_percent.0;
    if !(0.0..=100.0).contains(&pct) {
        p.push(
            format!("{at}.sample_percent"),
            format!("{pct} is out of range (0 to 100)"),
        );
    }
}

fn check_name(p: &mut Problems, path: &str, what: &str, name: &str) {
    if name.is_empty() {
        p.push(path, format!("{what} name must not be empty"));
    } else if name.len() > MAX_NAME_LEN {
        p.push(
            path,
            format!("{what} name is longer than {MAX_NAME_LEN} bytes"),
        );
    } else if name.chars().any(char::is_control) {
        p.push(
            path,
            format!("{what} name {name:?} contains a control character"),
        );
    }
}

/// Reports the second and later uses of a name; `names` yields (path, name).
fn check_unique<'a>(p: &mut Problems, what: &str, names: impl Iterator<Item = (String, &'a str)>) {
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (path, name) in names {
        if name.is_empty() {
            continue;
        }
        match seen.get(name) {
            Some(first) => p.push(
                &path,
                format!("duplicate {what} name \"{name}\" (first used at {first})"),
            ),
            None => {
                seen.insert(name, path);
            }
        }
    }
}

fn check_timeout(p: &mut Problems, path: &str, ms: u64) {
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        p.push(
            path,
            format!("{ms} is out of range: expected 1..={MAX_TIMEOUT_MS} milliseconds"),
        );
    }
}

/// Reports `value` outside `range` as "V is out of range: expected LO..=HI".
fn check_http2(p: &mut Problems, at: &str, h: &super::schema::Http2Config) {
    let field = |f: &str| format!("{at}.{f}");
    check_range(
        p,
        &field("max_concurrent_streams"),
        h.max_concurrent_streams,
        1..=1000,
    );
    check_range(
        p,
        &field("max_header_list_bytes"),
        h.max_header_list_bytes,
        1024..=1024 * 1024,
    );
    check_range(
        p,
        &field("max_pending_accept_resets"),
        h.max_pending_accept_resets,
        1..=1000,
    );
    check_range(
        p,
        &field("max_local_error_resets"),
        h.max_local_error_resets,
        1..=100_000,
    );
    // RFC 9113 §6.9.2: a window above 2^31-1 is a flow-control error.
    let windows = 65_535..=(1u32 << 31) - 1;
    check_range(
        p,
        &field("initial_stream_window"),
        h.initial_stream_window,
        windows.clone(),
    );
    check_range(
        p,
        &field("initial_connection_window"),
        h.initial_connection_window,
        windows,
    );
    check_range(
        p,
        &field("max_control_frames_per_second"),
        h.max_control_frames_per_second,
        1..=100_000,
    );
    check_range(
        p,
        &field("max_consecutive_empty_frames"),
        h.max_consecutive_empty_frames,
        1..=10_000,
    );
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    p: &mut Problems,
    path: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) {
    if !range.contains(&value) {
        p.push(
            path,
            format!(
                "{value} is out of range: expected {}..={}",
                range.start(),
                range.end()
            ),
        );
    }
}

fn check_listeners(config: &Config, p: &mut Problems) {
    if config.listeners.is_empty() {
        p.push("listeners", "at least one [[listeners]] entry is required");
    }
    let mut addresses: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let at = |field: &str| format!("listeners[{i}].{field}");
        check_name(p, &at("name"), "listener", &l.name);
        let tcp = l.protocol == ListenerProtocol::Tcp;
        super::validate_authz::check(&at("authz"), &l.authz, tcp, &mut p.0);
        // Port 0 is allowed: the daemon binds the first shard's socket, reads
        // the port the kernel chose, and binds the other shards to it. Two
        // port-0 listeners get two different ports, so they never clash.
        match addresses.get(&l.address).filter(|_| l.address.port() != 0) {
            Some(first) => p.push(
                at("address"),
                format!(
                    "duplicate address \"{}\" (also listeners[{first}].address)",
                    l.address
                ),
            ),
            None => {
                addresses.insert(l.address, i);
            }
        }
        if let Some(log) = &l.access_log {
            check_access_log(p, &at("access_log"), log);
        }
        check_range(p, &at("max_header_count"), l.max_header_count, 1..=128);
        check_http2(p, &at("http2"), &l.http2);
        let offers_h2 = l
            .tls
            .as_ref()
            .is_some_and(|t| t.alpn.iter().flatten().any(|a| a == "h2"));
        if l.http2.h2c && (tcp || l.tls.is_some()) {
            p.push(
                at("http2.h2c"),
                "h2c is for plaintext http listeners (a TLS listener offers \"h2\" with tls.alpn)",
            );
        }
        if tcp && offers_h2 {
            p.push(
                at("tls.alpn"),
                "\"h2\" cannot be offered on a tcp listener (its bytes are relayed, not served)",
            );
        }
        check_timeout(p, &at("min_body_rate_grace_ms"), l.min_body_rate_grace_ms);
        if !HEADER_BYTES_RANGE.contains(&l.max_header_bytes) {
            p.push(
                at("max_header_bytes"),
                format!(
                    "{} is out of range: expected {}..={}",
                    l.max_header_bytes,
                    HEADER_BYTES_RANGE.start(),
                    HEADER_BYTES_RANGE.end()
                ),
            );
        }
        check_timeout(p, &at("header_timeout_ms"), l.header_timeout_ms);
        check_timeout(p, &at("idle_timeout_ms"), l.idle_timeout_ms);

        let routes: Vec<usize> = (0..config.routes.len())
            .filter(|&r| config.routes[r].listener == l.name)
            .collect();
        match l.protocol {
            ListenerProtocol::Tcp if routes.len() != 1 => p.push(
                format!("listeners[{i}]"),
                format!(
                    "tcp listener \"{}\" needs exactly one route, found {}",
                    l.name,
                    routes.len()
                ),
            ),
            ListenerProtocol::Http if routes.is_empty() => p.push(
                format!("listeners[{i}]"),
                format!(
                    "no route uses listener \"{}\"; it would answer 404 to everything",
                    l.name
                ),
            ),
            _ => {}
        }

        if let Some(tls) = &l.tls {
            let auth = tls.effective_client_auth();
            let domains = !tls.trust_domains.is_empty();
            if domains && tls.client_ca.is_some() {
                p.push(
                    at("tls.trust_domains"),
                    "client_ca and trust_domains are exclusive: give each domain its own bundle",
                );
            }
            if domains && auth == ClientAuthConfig::None {
                p.push(
                    at("tls.client_auth"),
                    "client_auth is \"none\" but trust_domains are set",
                );
            }
            for (k, d) in tls.trust_domains.iter().enumerate() {
                let ok = !d.name.is_empty()
                    && d.name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)
                    });
                if !ok {
                    p.push(
                        at(&format!("tls.trust_domains[{k}].name")),
                        format!("\"{}\" is not a trust domain (lowercase letters, digits, '-', '.', '_')", d.name),
                    );
                } else if tls.trust_domains[..k].iter().any(|o| o.name == d.name) {
                    p.push(
                        at(&format!("tls.trust_domains[{k}].name")),
                        format!("trust domain \"{}\" listed twice", d.name),
                    );
                }
            }
            match (auth, &tls.client_ca) {
                _ if domains => {}
                (ClientAuthConfig::Require | ClientAuthConfig::Optional, None) => p.push(
                    at("tls.client_ca"),
                    format!(
                        "required when client_auth is \"{}\"",
                        if auth == ClientAuthConfig::Require { "require" } else { "optional" }
                    ),
                ),
                (ClientAuthConfig::None, Some(_)) => p.push(
                    at("tls.client_auth"),
                    "client_auth is \"none\" but client_ca is set; remove client_ca or choose \"require\" or \"optional\"",
                ),
                _ => {}
            }
            let known = tls_build::known_group_names();
            if tls.groups.is_empty() {
                p.push(
                    at("tls.groups"),
                    "at least one key-exchange group is required",
                );
            }
            for (g, name) in tls.groups.iter().enumerate() {
                let path = at(&format!("tls.groups[{g}]"));
                if !known.contains(&name.as_str()) {
                    p.push(
                        path,
                        format!("unknown group \"{name}\" (known: {})", known.join(", ")),
                    );
                } else if tls.groups[..g].contains(name) {
                    p.push(path, format!("duplicate group \"{name}\""));
                }
            }
            for (a, proto) in tls.alpn.iter().flatten().enumerate() {
                let path = at(&format!("tls.alpn[{a}]"));
                if proto.is_empty() || proto.len() > 255 {
                    p.push(path, "an ALPN protocol name must be 1..=255 bytes");
                } else if tls.alpn.iter().flatten().take(a).any(|x| x == proto) {
                    p.push(path, format!("duplicate ALPN protocol \"{proto}\""));
                }
            }
        }
    }
    check_unique(
        p,
        "listener",
        config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("listeners[{i}].name"), l.name.as_str())),
    );
}

fn check_clusters(config: &Config, p: &mut Problems) {
    for (i, c) in config.clusters.iter().enumerate() {
        let at = |field: &str| format!("clusters[{i}].{field}");
        check_name(p, &at("name"), "cluster", &c.name);
        if c.endpoints.is_empty() {
            p.push(at("endpoints"), "at least one endpoint is required");
        }
        for (e, addr) in c.endpoints.iter().enumerate() {
            let path = at(&format!("endpoints[{e}]"));
            if addr.port() == 0 {
                p.push(path, format!("port 0 in endpoint \"{addr}\""));
            } else if let Some(first) = c.endpoints[..e].iter().position(|a| a == addr) {
                p.push(
                    path,
                    format!("duplicate endpoint \"{addr}\" (also endpoints[{first}])"),
                );
            }
        }
        check_timeout(p, &at("connect_timeout_ms"), c.connect_timeout_ms);
        check_timeout(p, &at("pool.idle_timeout_ms"), c.pool.idle_timeout_ms);
        check_cluster_policies(p, i, c);
        super::validate_upstream::check(p, i, c);
    }
    check_unique(
        p,
        "cluster",
        config
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("clusters[{i}].name"), c.name.as_str())),
    );
}

/// "a, b, c" or a phrase for none.
fn known_list<'a>(names: impl Iterator<Item = &'a str>, none: &str) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        none.to_owned()
    } else {
        format!("known: {}", names.join(", "))
    }
}

fn check_routes(config: &Config, p: &mut Problems) {
    for (i, r) in config.routes.iter().enumerate() {
        let at = |field: &str| format!("routes[{i}].{field}");
        if let Some(name) = &r.name {
            check_name(p, &at("name"), "route", name);
        }
        let listener = config.listeners.iter().find(|l| l.name == r.listener);
        if listener.is_none() {
            p.push(
                at("listener"),
                format!(
                    "unknown listener \"{}\" ({})",
                    r.listener,
                    known_list(
                        config.listeners.iter().map(|l| l.name.as_str()),
                        "no listeners are defined"
                    )
                ),
            );
        }
        check_route_target(config, p, i, r);
        check_timeout(p, &at("timeout_ms"), r.timeout_ms);
        check_match(p, i, &r.matcher);
        check_route_policies(p, i, r);
        let tcp = listener.is_some_and(|l| l.protocol == ListenerProtocol::Tcp);
        super::validate_authz::check(&at("authz"), &r.authz, tcp, &mut p.0);
        if listener.is_some_and(|l| l.protocol == ListenerProtocol::Tcp) {
            check_tcp_route(p, i, r);
            check_tcp_route_clusters(config, p, i, r);
        }
        if listener.is_some_and(|l| l.protocol == ListenerProtocol::Tcp)
            && r.matcher != MatchConfig::default()
        {
            p.push(
                at("match"),
                format!(
                    "listener \"{}\" is a tcp listener; its route cannot match on host, path or method",
                    r.listener
                ),
            );
        }
    }
    check_unique(
        p,
        "route",
        config
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((format!("routes[{i}].name"), r.name.as_deref()?))),
    );
}

/// Exactly one of `cluster`, `split`, `redirect`, naming known clusters.
fn check_route_target(config: &Config, p: &mut Problems, i: usize, r: &RouteConfig) {
    let at = |field: &str| format!("routes[{i}].{field}");
    let given = [r.cluster.is_some(), r.split.is_some(), r.redirect.is_some()];
    match given.iter().filter(|g| **g).count() {
        0 => p.push(
            at("cluster"),
            "a route needs one of cluster, split or redirect",
        ),
        1 => {}
        _ => p.push(
            at("cluster"),
            "cluster, split and redirect are exclusive; use one",
        ),
    }
    let known = |p: &mut Problems, path: String, name: &str| {
        if !config.clusters.iter().any(|c| c.name == name) {
            p.push(
                path,
                format!(
                    "unknown cluster \"{name}\" ({})",
                    known_list(
                        config.clusters.iter().map(|c| c.name.as_str()),
                        "no clusters are defined"
                    )
                ),
            );
        }
    };
    if let Some(c) = &r.cluster {
        known(p, at("cluster"), c);
    }
    if let Some(split) = &r.split {
        if split.is_empty() {
            p.push(at("split"), "a split needs at least one cluster");
        }
        for (k, s) in split.iter().enumerate() {
            known(p, at(&format!("split[{k}].cluster")), &s.cluster);
            check_range(p, &at(&format!("split[{k}].weight")), s.weight, 0..=10000);
        }
        if !split.is_empty() && split.iter().all(|s| s.weight == 0) {
            p.push(at("split"), "the weights of a split must not all be 0");
        }
    }
    if let Some(rd) = &r.redirect {
        if ![301, 302, 303, 307, 308].contains(&rd.status) {
            p.push(
                at("redirect.status"),
                format!(
                    "{} is not a redirect status: expected 301, 302, 303, 307 or 308",
                    rd.status
                ),
            );
        }
        if let Some(scheme) = &rd.scheme
            && scheme != "http"
            && scheme != "https"
        {
            p.push(
                at("redirect.scheme"),
                format!("unknown scheme \"{scheme}\": expected \"http\" or \"https\""),
            );
        }
        if let Some(host) = &rd.host
            && (host.is_empty()
                || host.contains(['/', ' ', '?', '#'])
                || host.chars().any(char::is_control))
        {
            p.push(at("redirect.host"), format!("invalid host \"{host}\""));
        }
        if let Some(path) = &rd.path
            && (!path.starts_with('/')
                || path.contains([' ', '?', '#'])
                || path.chars().any(char::is_control))
        {
            p.push(
                at("redirect.path"),
                format!("path \"{path}\" must start with \"/\" and have no query, fragment, space or control character"),
            );
        }
    }
}

/// Retry, rate limit, header edits, rewrites and faults of route `i`.
/// A tcp listener's route: what only HTTP can do is refused by name.
/// A tcp listener relays bytes: its clusters must not speak HTTP/2.
fn check_tcp_route_clusters(config: &Config, p: &mut Problems, i: usize, r: &RouteConfig) {
    let targets = r
        .cluster
        .iter()
        .chain(r.split.iter().flatten().map(|s| &s.cluster));
    for name in targets {
        if let Some(c) = config.clusters.iter().find(|c| &c.name == name)
            && c.protocol != super::schema::UpstreamProtocolConfig::Http1
        {
            p.push(
                format!("routes[{i}].cluster"),
                format!(
                    "cluster \"{name}\" speaks {}; a tcp listener's route relays bytes and needs a cluster with protocol = \"http1\"",
                    c.protocol.name()
                ),
            );
        }
    }
}

fn check_tcp_route(p: &mut Problems, i: usize, r: &RouteConfig) {
    let at = |field: &str| format!("routes[{i}].{field}");
    let http_only = [
        ("redirect", r.redirect.is_some()),
        ("request_headers", !r.request_headers.is_empty()),
        ("response_headers", !r.response_headers.is_empty()),
        ("prefix_rewrite", r.prefix_rewrite.is_some()),
        ("host_rewrite", r.host_rewrite.is_some()),
        ("fault", r.fault.is_some()),
    ];
    for (field, set) in http_only {
        if set {
            p.push(
                at(field),
                format!(
                    "route of tcp listener \"{}\": {field} needs HTTP",
                    r.listener
                ),
            );
        }
    }
    if let Some(limit) = &r.rate_limit
        && matches!(limit.key, RateKeyConfig::Header(_))
    {
        p.push(
            at("rate_limit.key"),
            "a tcp connection has no headers (use \"route\" or \"spiffe_id\")",
        );
    }
    // Of `retry.on`, only connect failures can happen before a stream
    // exists; the rest never trigger on a tcp route (README).
    if r.retry
        .as_ref()
        .is_some_and(|retry| retry.per_try_timeout_ms.is_some())
    {
        p.push(
            at("retry.per_try_timeout_ms"),
            "a tcp route has no per-try timeout (the cluster's connect_timeout_ms bounds a connect)",
        );
    }
}

fn check_route_policies(p: &mut Problems, i: usize, r: &RouteConfig) {
    let at = |field: &str| format!("routes[{i}].{field}");
    if let Some(retry) = &r.retry {
        check_range(p, &at("retry.attempts"), retry.attempts, 0..=10);
        if let Some(ms) = retry.per_try_timeout_ms {
            check_timeout(p, &at("retry.per_try_timeout_ms"), ms);
        }
        check_timeout(p, &at("retry.backoff_base_ms"), retry.backoff_base_ms);
        check_timeout(p, &at("retry.backoff_max_ms"), retry.backoff_max_ms);
        if retry.backoff_max_ms < retry.backoff_base_ms {
            p.push(
                at("retry.backoff_max_ms"),
                format!(
                    "{} is below backoff_base_ms ({})",
                    retry.backoff_max_ms, retry.backoff_base_ms
                ),
            );
        }
        check_range(
            p,
            &at("retry.buffer_bytes"),
            retry.buffer_bytes,
            0..=MAX_RETRY_BUFFER,
        );
    }
    if let Some(limit) = &r.rate_limit {
        check_range(p, &at("rate_limit.rps"), limit.rps, 1..=10_000_000);
        if limit.burst == Some(0) {
            p.push(at("rate_limit.burst"), "must be at least 1");
        }
    }
    for (table, edits) in [
        ("request_headers", &r.request_headers),
        ("response_headers", &r.response_headers),
    ] {
        let names = edits
            .add
            .iter()
            .map(|(k, v)| ("add", k, Some(v)))
            .chain(edits.set.iter().map(|(k, v)| ("set", k, Some(v))))
            .chain(edits.remove.iter().map(|k| ("remove", k, None)));
        for (op, name, value) in names {
            let path = at(&format!("{table}.{op}"));
            if name.is_empty() || !name.bytes().all(is_tchar) {
                p.push(path, format!("invalid header name \"{name}\""));
            } else if PROTECTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                p.push(
                    path,
                    format!("header \"{name}\" is managed by the gateway (framing, hop-by-hop or forwarding) and cannot be edited"),
                );
            } else if let Some(v) = value
                && v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                p.push(
                    path,
                    format!("the value of \"{name}\" contains a control character"),
                );
            }
        }
    }
    if let Some(with) = &r.prefix_rewrite {
        if r.matcher.path_prefix.is_none() {
            p.push(
                at("prefix_rewrite"),
                "needs match.path_prefix (the prefix it replaces)",
            );
        }
        if !with.starts_with('/')
            || with.contains([' ', '?', '#'])
            || with.chars().any(char::is_control)
        {
            p.push(
                at("prefix_rewrite"),
                format!("\"{with}\" must start with \"/\" and have no query, fragment, space or control character"),
            );
        }
    }
    if let Some(host) = &r.host_rewrite
        && let Err(why) = check_host(&host.to_ascii_lowercase()).or_else(|e| {
            // A port is fine in a Host header.
            match host.rsplit_once(':') {
                Some((h, port)) if port.parse::<u16>().is_ok() => {
                    check_host(&h.to_ascii_lowercase())
                }
                _ => Err(e),
            }
        })
    {
        p.push(
            at("host_rewrite"),
            format!("invalid host \"{host}\": {why}"),
        );
    }
    if let Some(f) = &r.fault {
        for (field, v) in [
            ("abort_percent", f.abort_percent),
            ("delay_percent", f.delay_percent),
        ] {
            check_range(p, &at(&format!("fault.{field}")), v, 0..=100);
        }
        check_range(p, &at("fault.abort_status"), f.abort_status, 200..=599);
        check_range(p, &at("fault.delay_ms"), f.delay_ms, 0..=MAX_TIMEOUT_MS);
    }
}

/// Weights, hashing, health, outlier and breaker settings of cluster `i`.
fn check_cluster_policies(p: &mut Problems, i: usize, c: &ClusterConfig) {
    let at = |field: &str| format!("clusters[{i}].{field}");
    if !c.weights.is_empty() && c.weights.len() != c.endpoints.len() {
        p.push(
            at("weights"),
            format!(
                "{} weights for {} endpoints: give one per endpoint, in order",
                c.weights.len(),
                c.endpoints.len()
            ),
        );
    }
    for (k, w) in c.weights.iter().enumerate() {
        check_range(p, &at(&format!("weights[{k}]")), *w, 0..=1000);
    }
    if !c.weights.is_empty() && c.weights.iter().all(|w| *w == 0) {
        p.push(at("weights"), "the weights must not all be 0");
    }
    if let Some(h) = &c.health {
        check_timeout(p, &at("health.interval_ms"), h.interval_ms);
        check_timeout(p, &at("health.timeout_ms"), h.timeout_ms);
        if h.timeout_ms >= h.interval_ms {
            p.push(
                at("health.timeout_ms"),
                format!(
                    "{} must be below interval_ms ({})",
                    h.timeout_ms, h.interval_ms
                ),
            );
        }
        check_range(p, &at("health.jitter_percent"), h.jitter_percent, 0..=100);
        for (field, v) in [("healthy", h.healthy), ("unhealthy", h.unhealthy)] {
            check_range(p, &at(&format!("health.{field}")), v, 1..=100);
        }
        if !h.path.starts_with('/')
            || h.path.contains([' ', '#'])
            || h.path.chars().any(char::is_control)
        {
            p.push(at("health.path"), format!("path \"{}\" must start with \"/\" and have no space, fragment or control character", h.path));
        }
        let [lo, hi] = h.statuses;
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            p.push(
                at("health.statuses"),
                format!(
                    "[{lo}, {hi}] is not a status range: expected [low, high] within 100..=599"
                ),
            );
        }
    }
    if let Some(o) = &c.outlier {
        check_range(
            p,
            &at("outlier.consecutive_failures"),
            o.consecutive_failures,
            1..=1000,
        );
        check_timeout(p, &at("outlier.base_ejection_ms"), o.base_ejection_ms);
        check_timeout(p, &at("outlier.max_ejection_ms"), o.max_ejection_ms);
        if o.max_ejection_ms < o.base_ejection_ms {
            p.push(
                at("outlier.max_ejection_ms"),
                format!(
                    "{} is below base_ejection_ms ({})",
                    o.max_ejection_ms, o.base_ejection_ms
                ),
            );
        }
        check_range(
            p,
            &at("outlier.max_ejection_percent"),
            o.max_ejection_percent,
            0..=100,
        );
    }
    let l = &c.limits;
    for (field, v) in [
        ("max_connections", l.max_connections),
        ("max_pending", l.max_pending),
        ("max_requests", l.max_requests),
        ("max_retries", l.max_retries),
    ] {
        check_range(p, &at(&format!("limits.{field}")), v, 1..=10_000_000);
    }
    check_range(
        p,
        &at("retry_budget.percent"),
        c.retry_budget.percent,
        0..=100,
    );
}

/// Largest `routes.retry.buffer_bytes`: 16 MiB.
pub const MAX_RETRY_BUFFER: usize = 16 * 1024 * 1024;

/// Header names the gateway writes itself or treats as hop-by-hop.
const PROTECTED_HEADERS: [&str; 13] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-client-cert",
    "x-request-id",
];

fn check_match(p: &mut Problems, i: usize, m: &MatchConfig) {
    let at = |field: &str| format!("routes[{i}].match.{field}");
    if let Some(host) = &m.host
        && let Err(why) = check_host(host)
    {
        p.push(at("host"), format!("invalid host \"{host}\": {why}"));
    }
    if m.path_prefix.is_some() && m.path_exact.is_some() {
        p.push(
            at("path_exact"),
            "path_prefix and path_exact are exclusive; use one",
        );
    }
    for (field, path) in [
        ("path_prefix", &m.path_prefix),
        ("path_exact", &m.path_exact),
    ] {
        if let Some(path) = path {
            if !path.starts_with('/') {
                p.push(at(field), format!("path \"{path}\" must start with \"/\""));
            } else if path.contains(['?', '#']) || path.chars().any(|c| c.is_control() || c == ' ')
            {
                p.push(
                    at(field),
                    format!("path \"{path}\" must not contain a query, fragment, space or control character"),
                );
            }
        }
    }
    for (k, method) in m.methods.iter().enumerate() {
        let path = at(&format!("methods[{k}]"));
        if method.is_empty() || !method.bytes().all(is_tchar) {
            p.push(
                path,
                format!("invalid method \"{method}\": expected an HTTP token such as GET"),
            );
        } else if m.methods[..k].contains(method) {
            p.push(path, format!("duplicate method \"{method}\""));
        }
    }
}

/// Accepts `name.example`, `*.example` and `[v6]`; expects lowercase input.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("must not be empty");
    }
    if host == "*" {
        return Err("\"*\" matches every host; leave host out instead");
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err("expected an IPv6 address in brackets, e.g. [::1]"),
        };
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Err("IPv6 addresses need brackets, e.g. [::1]");
    }
    if host.contains(':') {
        return Err("must not include a port (matching ignores the request's port)");
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Err("a wildcard is only allowed as the whole first label, e.g. *.example.com");
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err("expected a host name such as api.example.com");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must be 1..=63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-', '_' and '.' are allowed");
        }
    }
    Ok(())
}
