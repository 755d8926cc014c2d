//! Route stage, authorization: who may do what, as compiled from the
//! `authz` tables of listeners and routes, and the one function that
//! decides ([`authorize`]) — for requests, TCP connections and `meshctl
//! authz explain` alike.
//!
//! A [`Policy`] has `deny` and `allow` rules. A [`Rule`] matches when every
//! condition it states holds (absent conditions hold for anyone); within a
//! condition any listed value will do. Deny wins over allow; a policy with
//! allow rules refuses what none of them matches; a policy without rules
//! allows everything. A request is allowed when its listener's policy and
//! then its route's policy both allow it.
//!
//! Conditions: the caller's SPIFFE ID ([`IdPattern`]: exact, `*` for one
//! path segment, a last `**` for one or more), its trust domain, whether it
//! presented a verified client certificate, its source address
//! ([`IpNet`]), and — for HTTP requests — the method, path and headers.
//!
//! Plain data and pure functions: no I/O, no clock, no allocation while
//! deciding; nothing panics on any input.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Listener, PathMatch};

/// Looks up request header values by name (case-insensitive).
pub trait Headers {
    /// The first value of `name`.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Who is calling: what the connection's TLS handshake and socket said.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The SPIFFE ID of the client certificate, if it had one.
    pub spiffe_id: Option<&'a str>,
    /// A client certificate was presented and verified.
    pub authenticated: bool,
    pub source: IpAddr,
}

/// What an HTTP request asks for (TCP connections have none).
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a str,
    /// The path without query.
    pub path: &'a str,
    pub headers: &'a dyn Headers,
}

/// A SPIFFE ID pattern: `spiffe://TRUST-DOMAIN/seg/seg…`, where a segment
/// `*` matches exactly one segment and a last segment `**` one or more.
///
/// Compiled for speed: the pattern's literal beginning (up to its first
/// wildcard, on a segment boundary) is compared with one `starts_with`,
/// which turns most non-matching rules away; only the rest is matched
/// segment by segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPattern {
    /// The whole ID for an exact pattern; else the part before the first
    /// wildcard, ending in `/`.
    literal: String,
    /// Segments after `literal`.
    tail: Vec<Segment>,
    /// Ends in `**`.
    rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Any,
}

/// Splits `spiffe://td/path` into its trust domain and path (without the
/// leading `/`); `None` for anything else.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    match rest.split_once('/') {
        Some((td, path)) => Some((td, path)),
        None => Some((rest, "")),
    }
}

impl IdPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<IdPattern, String> {
        let (td, path) = split_id(s).ok_or("must start with \"spiffe://\"")?;
        if td.is_empty()
            || !td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(format!(
                "trust domain \"{td}\" must be lowercase letters, digits, '-', '.' or '_'"
            ));
        }
        if s.ends_with('/') {
            return Err("has an empty path segment (a trailing '/')".into());
        }
        let mut segments = Vec::new();
        let mut rest = false;
        if !path.is_empty() {
            let parts: Vec<&str> = path.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                match *part {
                    "" => return Err("has an empty path segment".into()),
                    "**" if i + 1 == parts.len() => rest = true,
                    "**" => return Err("\"**\" may only be the last segment".into()),
                    "*" => segments.push(Segment::Any),
                    p if p.contains('*') => {
                        return Err(format!(
                            "segment \"{p}\": '*' must be a whole segment (\"*\" or a last \"**\")"
                        ));
                    }
                    p if p.bytes().all(is_path_byte) => segments.push(Segment::Exact(p.into())),
                    p => return Err(format!("segment \"{p}\" has a character SPIFFE IDs cannot")),
                }
            }
        }
        // The literal beginning: every exact segment before the first
        // wildcard.
        let exact = segments
            .iter()
            .take_while(|s| matches!(s, Segment::Exact(_)))
            .count();
        let mut literal = format!("spiffe://{td}");
        for seg in &segments[..exact] {
            if let Segment::Exact(e) = seg {
                literal.push('/');
                literal.push_str(e);
            }
        }
        let tail: Vec<Segment> = segments[exact..].to_vec();
        if !tail.is_empty() || rest {
            literal.push('/');
        }
        Ok(IdPattern {
            literal,
            tail,
            rest,
        })
    }

    /// Whether `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        if self.tail.is_empty() && !self.rest {
            return id == self.literal;
        }
        let Some(remainder) = id.strip_prefix(self.literal.as_str()) else {
            return false;
        };
        let mut parts = remainder.split('/');
        for seg in &self.tail {
            match (seg, parts.next()) {
                (Segment::Exact(want), Some(got)) if want == got => {}
                (Segment::Any, Some(got)) if !got.is_empty() => {}
                _ => return false,
            }
        }
        let mut left = parts.peekable();
        match left.peek() {
            None => !self.rest,
            Some(_) => self.rest && left.all(|p| !p.is_empty()),
        }
    }
}

/// SPIFFE path characters (letters, digits, `-._`; RFC 3986 unreserved
/// without `~`, as the SPIFFE ID spec allows).
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._".contains(&b)
}

/// The trust domain of a SPIFFE ID.
pub fn trust_domain(id: &str) -> Option<&str> {
    split_id(id).map(|(td, _)| td)
}

/// An address range, `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a one-address
    /// range). Host bits must be zero.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{addr}\" is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix \"/{p}\" must be 0..={max}"))?,
        };
        let net = IpNet { addr, prefix };
        if net.masked(addr) != addr {
            return Err(format!(
                "\"{s}\" has host bits set (the range starts at {})",
                net.masked(addr)
            ));
        }
        Ok(net)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

/// A header condition: present (any value), or equal to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    /// Lowercase.
    pub name: String,
    /// `None`: present with any value.
    pub value: Option<String>,
}

/// One allow or deny rule; every condition it states must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// Named in logs, counters and `meshctl authz explain`.
    pub name: Arc<str>,
    pub spiffe_ids: Vec<IdPattern>,
    pub trust_domains: Vec<String>,
    pub authenticated: Option<bool>,
    pub sources: Vec<IpNet>,
    /// Exact method names.
    pub methods: Vec<String>,
    pub paths: Vec<PathMatch>,
    pub headers: Vec<HeaderCondition>,
}

impl Rule {
    /// Whether the rule states a condition only HTTP requests have.
    pub fn needs_request(&self) -> bool {
        !self.methods.is_empty() || !self.paths.is_empty() || !self.headers.is_empty()
    }

    /// Whether the rule matches. A condition on the request does not hold
    /// for a connection without one (validation keeps such rules off TCP
    /// listeners).
    pub fn matches(&self, caller: &Caller<'_>, asked: Option<&Asked<'_>>) -> bool {
        let id = caller.spiffe_id;
        if !self.spiffe_ids.is_empty()
            && !id.is_some_and(|id| self.spiffe_ids.iter().any(|p| p.matches(id)))
        {
            return false;
        }
        if !self.trust_domains.is_empty()
            && !id
                .and_then(trust_domain)
                .is_some_and(|td| self.trust_domains.iter().any(|t| t == td))
        {
            return false;
        }
        if self
            .authenticated
            .is_some_and(|a| a != caller.authenticated)
        {
            return false;
        }
        if !self.sources.is_empty() && !self.sources.iter().any(|n| n.contains(caller.source)) {
            return false;
        }
        if !self.needs_request() {
            return true;
        }
        let Some(asked) = asked else {
            return false;
        };
        (self.methods.is_empty() || self.methods.iter().any(|m| m == asked.method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(asked.path)))
            && self
                .headers
                .iter()
                .all(|h| match asked.headers.header(&h.name) {
                    None => false,
                    Some(v) => h.value.as_ref().is_none_or(|want| want.as_bytes() == v),
                })
    }
}

/// The rules of one listener or route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// Names the refusal of what no allow rule matched
    /// (`route NAME: no allow rule`).
    pub default_name: Arc<str>,
}

/// Why a request was refused, or the rule that let it through. Borrows
/// the rule's name from the snapshot: an allowed request touches no
/// reference count (the snapshot is shared by every shard; a count would
/// be a cache line bouncing between cores). A refusal clones the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'p> {
    /// Allowed: by this allow rule, or (`None`) because there are no
    /// allow rules.
    Allow(Option<&'p Arc<str>>),
    /// Refused by this rule (or by the policy's default: no allow rule
    /// matched).
    Deny(&'p Arc<str>),
}

impl Policy {
    /// Whether the policy has no rule (allows everything).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Decides for `caller` (and the request, for HTTP).
    pub fn evaluate(&self, caller: &Caller<'_>, asked: Option<&Asked<'_>>) -> Verdict<'_> {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(caller, asked)) {
            return Verdict::Deny(&rule.name);
        }
        if self.allow.is_empty() {
            return Verdict::Allow(None);
        }
        match self.allow.iter().find(|r| r.matches(caller, asked)) {
            Some(rule) => Verdict::Allow(Some(&rule.name)),
            None => Verdict::Deny(&self.default_name),
        }
    }
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Listener,
    Route,
}

/// The listener's policy, then the route's: the first refusal, or the
/// route's (else the listener's) allowing rule.
pub fn authorize<'p>(
    listener: &'p Policy,
    route: Option<&'p Policy>,
    caller: &Caller<'_>,
    asked: Option<&Asked<'_>>,
) -> (Verdict<'p>, Stage) {
    let by_listener = listener.evaluate(caller, asked);
    if matches!(by_listener, Verdict::Deny(_)) {
        return (by_listener, Stage::Listener);
    }
    match route.map(|p| p.evaluate(caller, asked)) {
        Some(deny @ Verdict::Deny(_)) => (deny, Stage::Route),
        Some(Verdict::Allow(Some(rule))) => (Verdict::Allow(Some(rule)), Stage::Route),
        _ => (by_listener, Stage::Listener),
    }
}

/// How a request fared: the route it matched (when the listener let it
/// that far), the verdict and where it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized<'p> {
    pub route: Option<usize>,
    pub verdict: Verdict<'p>,
    pub stage: Stage,
}

/// Authorizes an HTTP request on `listener`: its policy first (a caller it
/// refuses learns nothing of the routes), then route matching, then the
/// matched route's policy. The request path leaves route matching and the
/// rules alike. What `meshctl authz explain` shows is this function's
/// answer, so it cannot differ from what requests meet.
pub fn authorize_request<'p>(
    listener: &'p Listener,
    host: Option<&str>,
    caller: &Caller<'_>,
    asked: &Asked<'_>,
) -> Authorized<'p> {
    let by_listener = listener.authz.evaluate(caller, Some(asked));
    if matches!(by_listener, Verdict::Deny(_)) {
        return Authorized {
            route: None,
            verdict: by_listener,
            stage: Stage::Listener,
        };
    }
    let route = listener.find_route_index(host, asked.path, asked.method);
    let (verdict, stage) = authorize(
        &listener.authz,
        route.map(|i| &listener.routes[i].authz),
        caller,
        Some(asked),
    );
    Authorized {
        route,
        verdict,
        stage,
    }
}

/// Authorizes a connection of a TCP listener: its policy, then its one
/// route's.
pub fn authorize_connection<'p>(
    listener: &'p Listener,
    caller: &Caller<'_>,
) -> (Verdict<'p>, Stage) {
    authorize(
        &listener.authz,
        listener.routes.first().map(|r| &r.authz),
        caller,
        None,
    )
}

#[cfg(test)]
mod tests;
