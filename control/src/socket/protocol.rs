//! The control protocol, version 1: message types, the request decoder and
//! the line framer. Sans-IO: bytes in, values and bytes out; no socket, no
//! clock. Never panics on any input.
//!
//! # Framing
//!
//! A connection carries one JSON request per line and gets one JSON response
//! per request line, in order, on the same connection; a client may send any
//! number of requests on one connection. A line ends with `\n` (a `\r`
//! before it is dropped); blank lines are ignored, and a last line without
//! `\n` is answered when the client half-closes. A request line longer
//! than the server's maximum ([`DEFAULT_MAX_REQUEST_BYTES`], 4 MiB, not
//! counting the `\n`) is answered with a `too_large` error and the
//! connection is closed. [`LineDecoder`] checks the length *before* it
//! buffers more bytes: it never holds more than `max + 1` bytes.
//!
//! # Version 1 messages
//!
//! Request (`args` is omitted for commands without arguments, and may be
//! omitted when every argument is optional):
//!
//! ```json
//! {"id":7,"version":1,"command":"status"}
//! {"id":8,"version":1,"command":"config_apply","args":{"path":"/etc/meshgate/meshgate.toml","toml":"..."}}
//! {"id":9,"version":1,"command":"endpoint_drain","args":{"cluster":"api","address":"10.0.0.7:8080"}}
//! {"id":"a","version":1,"command":"drain","args":{"timeout_s":30}}
//! ```
//!
//! Top-level fields: `id` (any JSON value, echoed in the response; `null`
//! when absent), `version` (the protocol version the client speaks; absent
//! means 1), `command` (a string naming the command), `args` (an object).
//! Commands and their `args`:
//!
//! | command | args |
//! |---|---|
//! | `status`, `config_show`, `routes`, `clusters`, `certs_reload`, `stats` | none |
//! | `config_check` | `path`: string?, `toml`: string?, `config`: object? |
//! | `config_apply` | `path`: string?, `toml`: string?, `config`: object?, `canary`: integer? (shard), `watch_s`: integer? |
//! | `endpoint_drain`, `endpoint_enable` | `cluster`: string, `address`: string |
//! | `drain` | `timeout_s`: integer? |
//! | `log_level` | `level`: string |
//! | `authz_explain` | `listener`: string, `spiffe_id`: string?, `authenticated`: bool? (default: `spiffe_id` given), `source`: string? (IP, default `127.0.0.1`), `method`: string? (`GET`), `path`: string? (`/`), `host`: string?, `headers`: [string]? (`"name: value"`) |
//!
//! For `config_check` / `config_apply`, `toml` is the configuration text and
//! `path` the file it came from (absolute): the daemon resolves relative
//! paths inside the text against `path`'s folder and names `path` in its
//! errors. With `path` alone the daemon reads the file itself. `config`
//! gives the configuration inline as a JSON object with the TOML schema's
//! shape (`{"listeners":[{"name":"public","address":"127.0.0.1:8080"}],...}`;
//! JSON `null` has no TOML form and is refused); `toml` and `config` are
//! exclusive.
//!
//! Responses:
//!
//! ```json
//! {"id":7,"ok":true,"result":{"version":"0.1.0","uptime_s":12}}
//! {"id":9,"ok":false,"error":{"kind":"invalid","message":"no cluster \"api\""}}
//! ```
//!
//! `error.kind` is one of [`ErrorKind`] in snake case: `invalid_json`,
//! `invalid_request`, `unknown_command`, `too_large`, `version_mismatch`,
//! `permission_denied`, `timeout`, `invalid` (a config or argument was
//! rejected), `failed`, `not_implemented`. Errors the server raises before
//! it could read the request's `id` carry `"id":null`.
//!
//! # Evolution rules
//!
//! - New commands, new optional request arguments, new response fields and
//!   new error kinds may be added within version 1. Clients ignore response
//!   fields they do not know and treat an unknown error kind like `failed`.
//! - Fields are never removed, renamed or given another type within a
//!   version; a command's meaning does not change.
//! - The server rejects what it does not know: unknown top-level fields and
//!   unknown `args` fields are `invalid_request`, an unknown command is
//!   `unknown_command` — so a client learns that an old server ignored
//!   nothing it asked for.
//! - Clients send `"version": 1`. A server answers any other version with
//!   `version_mismatch` before looking at the rest of the request. A change
//!   that breaks these rules needs version 2.
//!
//! The compatibility test in `socket/tests.rs` pins these shapes.

use std::fmt;
use std::path::PathBuf;

pub use super::framing::{LineDecoder, TooLarge};

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default maximum request line, not counting its `\n`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

/// Every command name of version 1, as sent in `"command"`.
pub const COMMANDS: &[&str] = &[
    "status",
    "config_check",
    "config_apply",
    "config_show",
    "routes",
    "clusters",
    "endpoint_drain",
    "endpoint_enable",
    "certs_reload",
    "stats",
    "top",
    "drain",
    "log_level",
    "log_reopen",
    "authz_explain",
];

/// One request. On the wire: `{"id":…,"version":1,"command":…,"args":{…}}`
/// (see the module docs); serde goes through that shape, and deserializing
/// applies the same checks as [`decode_request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response; `null` when the client sent none.
    pub id: Value,
    /// The version the client speaks; `None` (absent) means 1.
    pub version: Option<u32>,
    pub command: Command,
}

/// A control command with its arguments. Serialized adjacently tagged:
/// `{"command":"drain","args":{"timeout_s":30}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "command",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Command {
    Status,
    ConfigCheck {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        toml: Option<String>,
        /// The configuration as a JSON object (the TOML schema's shape).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<serde_json::Value>,
    },
    ConfigApply {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        toml: Option<String>,
        /// The configuration as a JSON object (the TOML schema's shape).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<serde_json::Value>,
        /// Publish to this shard only, watch, then promote or roll back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canary: Option<usize>,
        /// The canary's watch window (default 30 s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watch_s: Option<u64>,
    },
    ConfigShow,
    Routes,
    Clusters,
    EndpointDrain {
        cluster: String,
        address: String,
    },
    EndpointEnable {
        cluster: String,
        address: String,
    },
    CertsReload,
    Stats,
    /// Cumulative per-route and per-cluster figures for `meshctl top`.
    Top,
    Drain {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    LogLevel {
        level: String,
    },
    /// Reopen the access log files (after logrotate moved them).
    LogReopen,
    /// Which route a request would match and which authorization rule
    /// would decide, without sending traffic.
    AuthzExplain {
        listener: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spiffe_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authenticated: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<String>,
    },
}

impl Command {
    /// The wire name (`"config_apply"`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::ConfigCheck { .. } => "config_check",
            Command::ConfigApply { .. } => "config_apply",
            Command::ConfigShow => "config_show",
            Command::Routes => "routes",
            Command::Clusters => "clusters",
            Command::EndpointDrain { .. } => "endpoint_drain",
            Command::EndpointEnable { .. } => "endpoint_enable",
            Command::CertsReload => "certs_reload",
            Command::Stats => "stats",
            Command::Top => "top",
            Command::Drain { .. } => "drain",
            Command::LogLevel { .. } => "log_level",
            Command::LogReopen => "log_reopen",
            Command::AuthzExplain { .. } => "authz_explain",
        }
    }
}

/// One response. `result` is present when `ok`, `error` when not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: Value,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A success carrying `result`.
    pub fn ok(id: Value, result: Value) -> Response {
        Response {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn error(id: Value, error: ErrorBody) -> Response {
        Response {
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// What went wrong, for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub message: String,
}

impl ErrorBody {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error ({}): {}", self.kind.as_str(), self.message)
    }
}

/// The class of an error; snake case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line is not JSON.
    InvalidJson,
    /// JSON, but not a valid request: not an object, missing or mistyped
    /// field, unknown field.
    InvalidRequest,
    /// `command` names no command this server knows.
    UnknownCommand,
    /// The request line exceeds the server's maximum.
    TooLarge,
    /// The client speaks another protocol version.
    VersionMismatch,
    /// The peer's uid may not use the socket.
    PermissionDenied,
    /// The command did not finish in time.
    Timeout,
    /// A configuration or argument was rejected; the message says which.
    Invalid,
    /// The command failed.
    Failed,
    /// The command exists but this server does not implement it (yet).
    NotImplemented,
    /// A kind this build does not know (sent by a newer server); clients
    /// treat it like [`ErrorKind::Failed`]. Never sent by this build.
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::UnknownCommand => "unknown_command",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::VersionMismatch => "version_mismatch",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Failed => "failed",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The top-level fields of a v1 request.
const REQUEST_FIELDS: &[&str] = &["id", "version", "command", "args"];

/// Decodes one request line (without its `\n`). Every failure comes back
/// as a ready error [`Response`], carrying the request's `id` when it could
/// be read. Checks, in order: JSON syntax (`invalid_json`); an object
/// (`invalid_request`); `version` (`version_mismatch` unless absent or 1);
/// unknown top-level fields, a missing or non-string `command`
/// (`invalid_request`); a known command name (`unknown_command`); the
/// `args` (`invalid_request`, naming the field).
#[expect(
    clippy::result_large_err,
    reason = "the error is the response to send; once per control request, off the data path"
)]
pub fn decode_request(line: &[u8]) -> Result<Request, Response> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        Response::error(
            Value::Null,
            ErrorBody::new(ErrorKind::InvalidJson, format!("invalid JSON: {e}")),
        )
    })?;
    request_from_value(value).map_err(|(id, e)| Response::error(id, e))
}

/// The checks of [`decode_request`] on parsed JSON; the error carries the
/// id read so far.
fn request_from_value(value: Value) -> Result<Request, (Value, ErrorBody)> {
    let invalid =
        |id: &Value, msg: String| (id.clone(), ErrorBody::new(ErrorKind::InvalidRequest, msg));
    let Value::Object(mut obj) = value else {
        return Err(invalid(
            &Value::Null,
            "a request must be a JSON object".to_owned(),
        ));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);

    let version = match obj.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(v) => Some(v),
            None => {
                return Err(invalid(
                    &id,
                    format!("field \"version\": expected a non-negative integer, got {v}"),
                ));
            }
        },
    };
    if let Some(v) = version
        && v != PROTOCOL_VERSION
    {
        return Err((
            id,
            ErrorBody::new(
                ErrorKind::VersionMismatch,
                format!(
                    "this server speaks control protocol version {PROTOCOL_VERSION}; \
                     the request asked for version {v}"
                ),
            ),
        ));
    }

    if let Some(unknown) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        let msg = format!(
            "unknown field \"{unknown}\"; a request has the fields {}",
            REQUEST_FIELDS.join(", ")
        );
        return Err(invalid(&id, msg));
    }
    let name = match obj.get("command") {
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            return Err(invalid(
                &id,
                format!("field \"command\": expected a string, got {other}"),
            ));
        }
        None => return Err(invalid(&id, "missing field \"command\"".to_owned())),
    };
    if !COMMANDS.contains(&name.as_str()) {
        return Err((
            id,
            ErrorBody::new(
                ErrorKind::UnknownCommand,
                format!("unknown command \"{name}\""),
            ),
        ));
    }
    let args = match obj.remove("args") {
        None | Some(Value::Null) => None,
        Some(Value::Object(args)) => Some(args),
        Some(other) => {
            return Err(invalid(
                &id,
                format!("field \"args\": expected an object, got {other}"),
            ));
        }
    };
    match parse_command(&name, args) {
        Ok(command) => Ok(Request {
            id,
            version,
            command,
        }),
        Err(e) => Err(invalid(&id, format!("command \"{name}\": {e}"))),
    }
}

/// Deserializes a known command. Absent `args` means no arguments: a
/// command without arguments gets none, one with only optional arguments
/// gets `{}`. Empty `args` on a command without arguments is accepted too.
fn parse_command(name: &str, args: Option<Map<String, Value>>) -> Result<Command, String> {
    let build = |args: Option<Value>| {
        let mut obj = Map::new();
        obj.insert("command".to_owned(), Value::String(name.to_owned()));
        if let Some(args) = args {
            obj.insert("args".to_owned(), args);
        }
        Command::deserialize(Value::Object(obj))
    };
    match args {
        Some(args) if args.is_empty() => build(Some(Value::Object(Map::new())))
            .or_else(|_| build(None))
            .map_err(|e| e.to_string()),
        Some(args) => build(Some(Value::Object(args.clone()))).map_err(|e| {
            // serde names missing and unknown fields but not the field of
            // a type error: find it by trying each field on its own.
            let faulty = args.iter().find_map(|(k, v)| {
                let mut one = Map::new();
                one.insert(k.clone(), v.clone());
                match build(Some(Value::Object(one))) {
                    Err(e) if !e.to_string().starts_with("missing field") => Some(k),
                    _ => None,
                }
            });
            match faulty {
                Some(k) if !e.to_string().contains("field") => format!("field \"{k}\": {e}"),
                _ => e.to_string(),
            }
        }),
        None => build(None)
            .or_else(|_| build(Some(Value::Object(Map::new()))))
            .map_err(|e| e.to_string()),
    }
}

/// The wire shape, for serialization.
#[derive(Serialize)]
struct WireRequest<'a> {
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(flatten)]
    command: &'a Command,
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireRequest {
            id: &self.id,
            version: self.version,
            command: &self.command,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
        let value = Value::deserialize(d)?;
        request_from_value(value).map_err(|(_, e)| de::Error::custom(e.message))
    }
}

/// Appends `r` as one JSON line.
pub fn encode_response(r: &Response, out: &mut Vec<u8>) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, r).is_err() {
        // Only non-string map keys can fail, and `Value` has none; answer
        // something well-formed anyway.
        out.truncate(start);
        let fallback = Response::error(
            r.id.clone(),
            ErrorBody::new(ErrorKind::Failed, "the response could not be encoded"),
        );
        let _ = serde_json::to_writer(&mut *out, &fallback);
    }
    out.push(b'\n');
}

/// Appends `r` as one JSON line (the client side of [`encode_response`]).
pub fn encode_request(r: &Request, out: &mut Vec<u8>) {
    // A `Request` holds only strings, integers, paths and a `Value`; a
    // non-UTF-8 path is the one thing serde_json refuses.
    match serde_json::to_writer(&mut *out, r) {
        Ok(()) => out.push(b'\n'),
        Err(_) => {
            let mut lossy = r.clone();
            if let Command::ConfigCheck { path, .. } | Command::ConfigApply { path, .. } =
                &mut lossy.command
                && let Some(p) = path
            {
                *p = PathBuf::from(p.to_string_lossy().into_owned());
            }
            let _ = serde_json::to_writer(&mut *out, &lossy);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_kind(line: &str) -> (Value, ErrorKind) {
        let r = decode_request(line.as_bytes()).unwrap_err();
        assert!(!r.ok);
        (r.id, r.error.unwrap().kind)
    }

    #[test]
    fn decode_invalid_json() {
        assert_eq!(
            err_kind("{\"id\":1,"),
            (Value::Null, ErrorKind::InvalidJson)
        );
        assert_eq!(err_kind(""), (Value::Null, ErrorKind::InvalidJson));
        assert_eq!(err_kind("\u{fffd}"), (Value::Null, ErrorKind::InvalidJson));
    }

    #[test]
    fn decode_not_an_object() {
        assert_eq!(err_kind("[1]"), (Value::Null, ErrorKind::InvalidRequest));
        assert_eq!(
            err_kind("\"status\""),
            (Value::Null, ErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn decode_missing_command() {
        assert_eq!(
            err_kind(r#"{"id":3,"version":1}"#),
            (Value::from(3), ErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn decode_unknown_command() {
        assert_eq!(
            err_kind(r#"{"id":"x","version":1,"command":"reboot"}"#),
            (Value::from("x"), ErrorKind::UnknownCommand)
        );
        // Even with arguments: the name decides, not the arguments.
        assert_eq!(
            err_kind(r#"{"id":4,"command":"reboot","args":{"now":true}}"#),
            (Value::from(4), ErrorKind::UnknownCommand)
        );
    }

    #[test]
    fn decode_wrong_types() {
        for line in [
            r#"{"id":5,"command":7}"#,
            r#"{"id":5,"command":"drain","args":{"timeout_s":"soon"}}"#,
            r#"{"id":5,"command":"drain","args":{"timeout_s":-1}}"#,
            r#"{"id":5,"command":"log_level","args":{"level":3}}"#,
            r#"{"id":5,"command":"log_level"}"#,
            r#"{"id":5,"command":"endpoint_drain","args":{"cluster":"a"}}"#,
            r#"{"id":5,"command":"status","args":[1]}"#,
            r#"{"id":5,"command":"status","args":{"verbose":true}}"#,
            r#"{"id":5,"command":"drain","args":{"timeout":3}}"#,
            r#"{"id":5,"version":"1","command":"status"}"#,
            r#"{"id":5,"command":"status","extra":1}"#,
        ] {
            assert_eq!(
                err_kind(line),
                (Value::from(5), ErrorKind::InvalidRequest),
                "{line}"
            );
        }
    }

    #[test]
    fn decode_version_mismatch() {
        assert_eq!(
            err_kind(r#"{"id":6,"version":2,"command":"status"}"#),
            (Value::from(6), ErrorKind::VersionMismatch)
        );
        // Checked before anything else about the request: a v2 client's
        // new command is a version problem, not an unknown command.
        assert_eq!(
            err_kind(r#"{"id":6,"version":2,"command":"frobnicate","v2field":1}"#),
            (Value::from(6), ErrorKind::VersionMismatch)
        );
        assert_eq!(
            err_kind(r#"{"id":6,"version":0,"command":"status"}"#),
            (Value::from(6), ErrorKind::VersionMismatch)
        );
    }

    #[test]
    fn decode_defaults() {
        let r = decode_request(br#"{"command":"status"}"#).unwrap();
        assert_eq!(r.id, Value::Null);
        assert_eq!(r.version, None);
        assert_eq!(r.command, Command::Status);
        let r = decode_request(br#"{"id":1,"command":"drain"}"#).unwrap();
        assert_eq!(r.command, Command::Drain { timeout_s: None });
        let r = decode_request(br#"{"id":1,"command":"stats","args":{}}"#).unwrap();
        assert_eq!(r.command, Command::Stats);
        let r = decode_request(br#"{"id":1,"command":"config_check","args":null}"#).unwrap();
        assert_eq!(
            r.command,
            Command::ConfigCheck {
                path: None,
                toml: None,
                config: None,
            }
        );
    }

    /// Found by the `control_request` fuzz target: a huge numeric id came
    /// back as a different number (float parsing was not round-trip exact).
    #[test]
    fn huge_numeric_ids_round_trip_exactly() {
        let line = format!(
            r#"{{"id":{}3,"version":1,"command":"status"}}"#,
            "7".repeat(96)
        );
        let req = decode_request(line.as_bytes()).unwrap();
        let mut again = Vec::new();
        encode_request(&req, &mut again);
        again.pop();
        assert_eq!(decode_request(&again).unwrap(), req);
    }

    #[test]
    fn every_command_round_trips() {
        let all = [
            Command::Status,
            Command::ConfigCheck {
                path: Some("/a/b.toml".into()),
                toml: Some("x = 1\n".into()),
                config: None,
            },
            Command::ConfigApply {
                path: None,
                toml: Some("y".into()),
                config: None,
                canary: Some(1),
                watch_s: Some(30),
            },
            Command::ConfigShow,
            Command::Routes,
            Command::Clusters,
            Command::EndpointDrain {
                cluster: "c".into(),
                address: "10.0.0.1:80".into(),
            },
            Command::EndpointEnable {
                cluster: "c".into(),
                address: "[::1]:80".into(),
            },
            Command::CertsReload,
            Command::Stats,
            Command::Top,
            Command::Drain {
                timeout_s: Some(30),
            },
            Command::LogLevel {
                level: "debug".into(),
            },
            Command::LogReopen,
            Command::AuthzExplain {
                listener: "public".into(),
                spiffe_id: Some("spiffe://mesh.local/ns/a/sa/b".into()),
                authenticated: None,
                source: Some("10.0.0.1".into()),
                method: Some("POST".into()),
                path: Some("/orders/1".into()),
                host: None,
                headers: vec!["x-env: prod".into()],
            },
        ];
        assert_eq!(all.len(), COMMANDS.len());
        for (command, name) in all.into_iter().zip(COMMANDS) {
            assert_eq!(command.name(), *name);
            let req = Request {
                id: Value::from(name.len()),
                version: Some(PROTOCOL_VERSION),
                command,
            };
            let mut line = Vec::new();
            encode_request(&req, &mut line);
            assert_eq!(line.pop(), Some(b'\n'));
            assert!(!line.contains(&b'\n'));
            assert_eq!(decode_request(&line).unwrap(), req);
            let via_serde: Request = serde_json::from_slice(&line).unwrap();
            assert_eq!(via_serde, req);
        }
    }

    #[test]
    fn encode_response_is_one_line() {
        let mut out = Vec::new();
        let r = Response::ok(Value::from(1), serde_json::json!({"text": "a\nb"}));
        encode_response(&r, &mut out);
        assert_eq!(
            out,
            b"{\"id\":1,\"ok\":true,\"result\":{\"text\":\"a\\nb\"}}\n"
        );
    }

    #[test]
    fn unknown_error_kind_from_a_newer_server_is_tolerated() {
        let r: Response = serde_json::from_str(
            r#"{"id":1,"ok":false,"error":{"kind":"on_fire","message":"m"},"hint":"x"}"#,
        )
        .unwrap();
        assert_eq!(r.error.unwrap().kind, ErrorKind::Unknown);
    }
}
