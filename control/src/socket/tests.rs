//! The v1 compatibility pins and the server tests over real Unix sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

// ---- v1 compatibility: these strings are the protocol. Changing one is a
// ---- breaking change (see the evolution rules in `protocol`).

fn encoded_request(id: Value, command: Command) -> String {
    let mut out = Vec::new();
    let req = Request {
        id,
        version: Some(1),
        command,
    };
    encode_request(&req, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn socket_v1_request_shapes_are_pinned() {
    assert_eq!(PROTOCOL_VERSION, 1);
    assert_eq!(DEFAULT_MAX_REQUEST_BYTES, 4 * 1024 * 1024);
    let pins: Vec<(&str, Command)> = vec![
        (
            r#"{"id":1,"version":1,"command":"status"}"#,
            Command::Status,
        ),
        (
            r#"{"id":2,"version":1,"command":"config_apply","args":{"path":"/etc/meshgate/meshgate.toml","toml":"[control]\n"}}"#,
            Command::ConfigApply {
                path: Some("/etc/meshgate/meshgate.toml".into()),
                toml: Some("[control]\n".into()),
                config: None,
                canary: None,
                watch_s: None,
            },
        ),
        (
            r#"{"id":3,"version":1,"command":"config_check","args":{"toml":"x"}}"#,
            Command::ConfigCheck {
                path: None,
                toml: Some("x".into()),
                config: None,
            },
        ),
        (
            r#"{"id":4,"version":1,"command":"endpoint_drain","args":{"cluster":"api","address":"10.0.0.7:8080"}}"#,
            Command::EndpointDrain {
                cluster: "api".into(),
                address: "10.0.0.7:8080".into(),
            },
        ),
        (
            r#"{"id":5,"version":1,"command":"endpoint_enable","args":{"cluster":"api","address":"10.0.0.7:8080"}}"#,
            Command::EndpointEnable {
                cluster: "api".into(),
                address: "10.0.0.7:8080".into(),
            },
        ),
        (
            r#"{"id":6,"version":1,"command":"drain","args":{"timeout_s":30}}"#,
            Command::Drain {
                timeout_s: Some(30),
            },
        ),
        (
            r#"{"id":7,"version":1,"command":"drain","args":{}}"#,
            Command::Drain { timeout_s: None },
        ),
        (
            r#"{"id":8,"version":1,"command":"log_level","args":{"level":"debug"}}"#,
            Command::LogLevel {
                level: "debug".into(),
            },
        ),
        (
            r#"{"id":9,"version":1,"command":"config_show"}"#,
            Command::ConfigShow,
        ),
        (
            r#"{"id":10,"version":1,"command":"routes"}"#,
            Command::Routes,
        ),
        (
            r#"{"id":11,"version":1,"command":"clusters"}"#,
            Command::Clusters,
        ),
        (
            r#"{"id":12,"version":1,"command":"certs_reload"}"#,
            Command::CertsReload,
        ),
        (r#"{"id":13,"version":1,"command":"stats"}"#, Command::Stats),
        (
            r#"{"id":14,"version":1,"command":"config_check","args":{"config":{"listeners":[]}}}"#,
            Command::ConfigCheck {
                path: None,
                toml: None,
                config: Some(serde_json::json!({"listeners": []})),
            },
        ),
    ];
    for (i, (wire, command)) in pins.into_iter().enumerate() {
        let id = Value::from(i + 1);
        assert_eq!(
            encoded_request(id.clone(), command.clone()),
            format!("{wire}\n")
        );
        let decoded = decode_request(wire.as_bytes()).unwrap();
        assert_eq!(decoded.id, id);
        assert_eq!(decoded.version, Some(1));
        assert_eq!(decoded.command, command);
    }
    // Accepted forms a hand-written client (socat, nc) may use.
    for wire in [
        r#"{"command":"status"}"#,
        r#"{"id":"s","command":"status","args":{}}"#,
        r#"{"id":null,"version":1,"command":"drain"}"#,
    ] {
        decode_request(wire.as_bytes()).unwrap();
    }
}

fn encoded_response(r: &Response) -> String {
    let mut out = Vec::new();
    encode_response(r, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn socket_v1_response_shapes_are_pinned() {
    assert_eq!(
        encoded_response(&Response::ok(
            json!(1),
            json!({"generation": 4, "uptime_s": 12})
        )),
        "{\"id\":1,\"ok\":true,\"result\":{\"generation\":4,\"uptime_s\":12}}\n"
    );
    assert_eq!(
        encoded_response(&Response::error(
            json!("a"),
            ErrorBody::new(ErrorKind::Invalid, "no cluster \"api\"")
        )),
        "{\"id\":\"a\",\"ok\":false,\"error\":{\"kind\":\"invalid\",\"message\":\"no cluster \\\"api\\\"\"}}\n"
    );
    let kinds = [
        (ErrorKind::InvalidJson, "invalid_json"),
        (ErrorKind::InvalidRequest, "invalid_request"),
        (ErrorKind::UnknownCommand, "unknown_command"),
        (ErrorKind::TooLarge, "too_large"),
        (ErrorKind::VersionMismatch, "version_mismatch"),
        (ErrorKind::PermissionDenied, "permission_denied"),
        (ErrorKind::Timeout, "timeout"),
        (ErrorKind::Invalid, "invalid"),
        (ErrorKind::Failed, "failed"),
        (ErrorKind::NotImplemented, "not_implemented"),
    ];
    for (kind, name) in kinds {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
        assert_eq!(kind.as_str(), name);
        let r = Response::error(Value::Null, ErrorBody::new(kind, "m"));
        assert_eq!(
            encoded_response(&r),
            format!(
                "{{\"id\":null,\"ok\":false,\"error\":{{\"kind\":\"{name}\",\"message\":\"m\"}}}}\n"
            )
        );
    }
    // Error responses the server builds from bad lines.
    let r = decode_request(br#"{"id":7,"version":2,"command":"status"}"#).unwrap_err();
    assert_eq!(
        encoded_response(&r),
        "{\"id\":7,\"ok\":false,\"error\":{\"kind\":\"version_mismatch\",\"message\":\"this server \
         speaks control protocol version 1; the request asked for version 2\"}}\n"
    );
}

// ---- server

/// Answers every command with its name; `log_level` "bad" is rejected,
/// `log_level` "panic" panics, `log_level` "slow" sleeps 300 ms.
struct TestHandler {
    calls: AtomicUsize,
}

impl Handler for TestHandler {
    fn handle(&self, command: Command) -> Result<Value, ErrorBody> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match &command {
            Command::LogLevel { level } if level == "bad" => Err(ErrorBody::new(
                ErrorKind::Invalid,
                "level: expected one of error, warn, info, debug, trace",
            )),
            Command::LogLevel { level } if level == "panic" => panic!("test handler panics"),
            Command::LogLevel { level } if level == "slow" => {
                std::thread::sleep(Duration::from_millis(300));
                Ok(json!({"slept": true}))
            }
            _ => Ok(json!({"command": command.name()})),
        }
    }
}

fn handler() -> Arc<TestHandler> {
    Arc::new(TestHandler {
        calls: AtomicUsize::new(0),
    })
}

/// A fresh folder for one test's socket, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mgctl-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("control.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn quick_config() -> ServerConfig {
    let mut config = ServerConfig::new(&[], 1024);
    config.idle_timeout = Duration::from_millis(300);
    config.shutdown_grace = Duration::from_secs(2);
    config
}

fn start(path: &Path, config: ServerConfig) -> (ControlServer, Arc<TestHandler>) {
    let h = handler();
    let server = ControlServer::start_with(path, config, h.clone()).unwrap();
    (server, h)
}

fn read_line(r: &mut impl BufRead) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "no full response line: {line:?}");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn socket_file_is_mode_0600_and_removed_on_shutdown() {
    let dir = TempDir::new();
    let path = dir.sock();
    let (server, _) = start(&path, quick_config());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // Nothing left behind from the staging folder.
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["control.sock"]);
    server.shutdown();
    assert!(!path.exists());
}

#[test]
fn socket_response_carries_the_request_id() {
    let dir = TempDir::new();
    let (server, h) = start(&dir.sock(), quick_config());
    let mut client = Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap();
    let r = client.call(Command::Routes).unwrap();
    assert_eq!(r.id, json!(1));
    assert!(r.ok);
    assert_eq!(r.result, Some(json!({"command": "routes"})));

    // Raw, with a string id, two requests in one write, CRLF, a blank line.
    let mut stream = UnixStream::connect(server.path()).unwrap();
    stream
        .write_all(
            b"{\"id\":\"abc\",\"version\":1,\"command\":\"stats\"}\r\n\n\
              {\"id\":[1],\"command\":\"log_level\",\"args\":{\"level\":\"bad\"}}\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let r = read_line(&mut reader);
    assert_eq!((r.id, r.ok), (json!("abc"), true));
    let r = read_line(&mut reader);
    assert_eq!((r.id, r.ok), (json!([1]), false));
    assert_eq!(r.error.unwrap().kind, ErrorKind::Invalid);
    assert_eq!(h.calls.load(Ordering::Relaxed), 3);
}

#[test]
fn socket_bad_requests_get_errors_and_the_connection_survives() {
    let dir = TempDir::new();
    let (server, h) = start(&dir.sock(), quick_config());
    let mut client = Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap();
    let cases: [(&[u8], ErrorKind); 5] = [
        (b"not json\n", ErrorKind::InvalidJson),
        (
            b"{\"id\":1,\"command\":\"reboot\"}\n",
            ErrorKind::UnknownCommand,
        ),
        (
            b"{\"id\":1,\"command\":\"drain\",\"args\":{\"timeout_s\":\"x\"}}\n",
            ErrorKind::InvalidRequest,
        ),
        (
            b"{\"id\":1,\"version\":9,\"command\":\"status\"}\n",
            ErrorKind::VersionMismatch,
        ),
        (
            b"{\"id\":1,\"command\":\"log_level\",\"args\":{\"level\":\"panic\"}}\n",
            ErrorKind::Failed,
        ),
    ];
    for (line, kind) in cases {
        let r = client.call_raw(line).unwrap();
        assert_eq!(r.error.map(|e| e.kind), Some(kind));
    }
    assert!(client.call(Command::Status).unwrap().ok);
    // Only the panicking request and the last one reached the handler.
    assert_eq!(h.calls.load(Ordering::Relaxed), 2);
}

#[test]
fn socket_100_concurrent_clients_10_requests_each() {
    let dir = TempDir::new();
    let mut config = quick_config();
    config.idle_timeout = Duration::from_secs(30);
    let (server, h) = start(&dir.sock(), config);
    let path = server.path().to_owned();
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&path, Some(Duration::from_secs(30))).unwrap();
                for i in 1..=10u64 {
                    let r = client.call(Command::Clusters).unwrap();
                    assert!(r.ok, "{r:?}");
                    assert_eq!(r.id, json!(i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.calls.load(Ordering::Relaxed), 1000);
}

#[test]
fn socket_silent_client_is_closed_after_idle_timeout() {
    let dir = TempDir::new();
    let (server, h) = start(&dir.sock(), quick_config());
    let mut stream = UnixStream::connect(server.path()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "closed without a word");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(h.calls.load(Ordering::Relaxed), 0);
    // The server is fine afterwards.
    assert!(
        Client::connect(server.path(), Some(Duration::from_secs(5)))
            .unwrap()
            .call(Command::Status)
            .unwrap()
            .ok
    );
}

#[test]
fn socket_trickling_client_is_closed_too() {
    let dir = TempDir::new();
    let (server, _) = start(&dir.sock(), quick_config());
    let mut stream = UnixStream::connect(server.path()).unwrap();
    let started = Instant::now();
    // One byte every 100 ms never completes a line within 300 ms.
    let mut closed = false;
    for _ in 0..30 {
        if stream.write_all(b" ").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed, "still open after {:?}", started.elapsed());
}

#[test]
fn socket_oversize_line_gets_too_large_then_close() {
    let dir = TempDir::new();
    let (server, h) = start(&dir.sock(), quick_config());
    let stream = UnixStream::connect(server.path()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // 1 KiB limit; send 64 KiB without a newline (the server stops reading
    // at the limit, so ignore a write that fails once it closes).
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = stream.write_all(&vec![b'x'; 64 * 1024]);
        })
    };
    let mut reader = BufReader::new(stream);
    let r = read_line(&mut reader);
    assert_eq!(r.id, Value::Null);
    assert_eq!(r.error.unwrap().kind, ErrorKind::TooLarge);
    // Then the connection ends: EOF, or ECONNRESET because the server
    // closed with our unread bytes in its queue.
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    writer.join().unwrap();
    assert_eq!(h.calls.load(Ordering::Relaxed), 0);
}

#[test]
fn socket_uid_check() {
    assert!(is_allowed(1000, 1000, &[]));
    assert!(is_allowed(0, 1000, &[]));
    assert!(is_allowed(1001, 1000, &[5, 1001]));
    assert!(!is_allowed(1001, 1000, &[5]));
    assert!(!is_allowed(65534, 0, &[]));
    let policy = AccessPolicy::new(&[4242]);
    assert!(policy.allows(dataplane::runtime::unixcred::effective_uid()));
    assert!(policy.allows(0));
    assert!(policy.allows(4242));
}

#[test]
fn socket_disallowed_uid_is_refused() {
    let dir = TempDir::new();
    let me = dataplane::runtime::unixcred::effective_uid();
    let mut config = quick_config();
    // A policy that excludes the caller (even when the tests run as root).
    config.access = AccessPolicy {
        self_uid: me.wrapping_add(1),
        allow_root: false,
        allowed_uids: vec![me.wrapping_add(2)],
    };
    assert!(!config.access.allows(me));
    let (server, h) = start(&dir.sock(), config);
    let mut client = Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap();
    let r = client.call(Command::Status).unwrap();
    assert!(!r.ok);
    let e = r.error.unwrap();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert!(e.message.contains(&format!("uid {me}")), "{}", e.message);
    assert_eq!(h.calls.load(Ordering::Relaxed), 0);
}

#[test]
fn socket_too_many_connections_are_refused() {
    let dir = TempDir::new();
    let mut config = quick_config();
    config.max_connections = 2;
    config.idle_timeout = Duration::from_secs(10);
    let (server, _) = start(&dir.sock(), config);
    let mut held: Vec<Client> = (0..2)
        .map(|_| Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap())
        .collect();
    // Both are registered once they answered a request.
    for c in &mut held {
        assert!(c.call(Command::Status).unwrap().ok);
    }
    let mut third = Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap();
    let r = third.call(Command::Status).unwrap();
    let e = r.error.unwrap();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Failed, "too many control connections")
    );
    drop(held);
    // Slots free up when clients leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut fourth = Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap();
    assert!(fourth.call(Command::Status).unwrap().ok);
}

#[test]
fn socket_second_server_on_a_live_path_refuses_to_start() {
    let dir = TempDir::new();
    let path = dir.sock();
    let (first, _) = start(&path, quick_config());
    let err = ControlServer::start_with(&path, quick_config(), handler()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // The first one still serves.
    let mut client = Client::connect(&path, Some(Duration::from_secs(5))).unwrap();
    assert!(client.call(Command::Status).unwrap().ok);
    drop(first);
    assert!(!path.exists());
}

#[test]
fn socket_stale_file_is_replaced_but_other_files_are_not() {
    let dir = TempDir::new();
    let path = dir.sock();
    // A socket nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (server, _) = start(&path, quick_config());
    assert!(
        Client::connect(&path, Some(Duration::from_secs(5)))
            .unwrap()
            .call(Command::Status)
            .unwrap()
            .ok
    );
    server.shutdown();

    std::fs::write(&path, b"not a socket").unwrap();
    let err = ControlServer::start_with(&path, quick_config(), handler()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

#[test]
fn socket_shutdown_closes_open_connections_and_is_prompt() {
    let dir = TempDir::new();
    let mut config = quick_config();
    config.idle_timeout = Duration::from_secs(60);
    let (server, _) = start(&dir.sock(), config);
    let mut client = Client::connect(server.path(), Some(Duration::from_secs(5))).unwrap();
    assert!(client.call(Command::Status).unwrap().ok);
    let started = Instant::now();
    server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        client.call(Command::Status),
        Err(ClientError::Closed | ClientError::Io(_))
    ));
    assert!(matches!(
        Client::connect(&dir.sock(), None),
        Err(ClientError::NotRunning { .. })
    ));
}

#[test]
fn socket_unterminated_last_line_is_answered_at_eof() {
    let dir = TempDir::new();
    let (server, _) = start(&dir.sock(), quick_config());
    let mut stream = UnixStream::connect(server.path()).unwrap();
    stream.write_all(br#"{"id":5,"command":"status"}"#).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_line(&mut BufReader::new(stream));
    assert_eq!((r.id, r.ok), (json!(5), true));
}

#[test]
fn socket_session_is_sans_io() {
    let mut session = Session::new(64, handler());
    let mut out = Vec::new();
    assert_eq!(
        session.on_bytes(b"{\"id\":1,\"command\":\"sta", &mut out),
        server::Flow::Continue
    );
    assert!(out.is_empty());
    session.on_bytes(b"tus\"}\n\n{\"id\":2,\"command\":\"routes\"}\n", &mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "{\"id\":1,\"ok\":true,\"result\":{\"command\":\"status\"}}\n\
         {\"id\":2,\"ok\":true,\"result\":{\"command\":\"routes\"}}\n"
    );
    assert_eq!(session.requests(), 2);
    out.clear();
    assert_eq!(
        session.on_bytes(&[b'x'; 100], &mut out),
        server::Flow::Close
    );
    assert!(String::from_utf8(out).unwrap().contains("\"too_large\""));
}

#[test]
fn socket_path_too_long_is_a_clear_error() {
    let dir = TempDir::new();
    let path = dir.0.join("x".repeat(120));
    let err = ControlServer::start_with(&path, quick_config(), handler()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("too long"), "{err}");
}
