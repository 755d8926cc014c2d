//! The control socket server: a Unix listener served by plain blocking std
//! threads beside the control thread — never by a shard — one thread
//! accepting and one per connection.
//!
//! Guarantees:
//! - The socket file is mode 0600 from the moment it is reachable (0660
//!   with its group set to [`ServerConfig::group`], so the users of
//!   `allowed_uids` can reach it at all): it is bound inside a fresh
//!   mode-0700 directory next to the final path, chmod-ed (and chown-ed),
//!   then renamed into place (so the process umask does not matter and
//!   there is no window with wider permissions). Only when that
//!   staging path would be too long for a socket address is the socket
//!   bound in place and chmod-ed at once (a window of microseconds with the
//!   umask's mode, still behind the uid check).
//! - Each connection's peer uid (`SO_PEERCRED`) must be the daemon's own
//!   uid, root, or in `allowed_uids` ([`AccessPolicy`]); a refused peer gets
//!   one `permission_denied` response, is logged with its uid and pid, and
//!   is closed without a byte of its request being read.
//! - At most [`ServerConfig::max_connections`] connections are served at
//!   once; the next one gets a `failed` "too many control connections"
//!   response and is closed.
//! - A request line must arrive within [`ServerConfig::idle_timeout`] of
//!   the connection opening or of the previous response, or the connection
//!   is closed quietly (this bounds both silent and trickling clients).
//! - An oversize line gets a `too_large` response, then the connection is
//!   closed. A panicking handler costs its request a `failed` response.
//! - Start refuses a path where a live server answers; a stale socket file
//!   (nobody listening) is replaced; a non-socket file is never removed.
//!
//! The per-connection logic is the sans-IO [`Session`]; the threads only
//! move bytes between it and the socket.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::runtime::unixcred;
use serde_json::Value;

use super::protocol::{
    Command, DEFAULT_MAX_REQUEST_BYTES, ErrorBody, ErrorKind, LineDecoder, Response,
    decode_request, encode_response,
};

/// Carries out commands. Called from the connection threads, possibly
/// several at once; a slow command holds up only its own connection.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, command: Command) -> Result<Value, ErrorBody>;
}

impl<F> Handler for F
where
    F: Fn(Command) -> Result<Value, ErrorBody> + Send + Sync + 'static,
{
    fn handle(&self, command: Command) -> Result<Value, ErrorBody> {
        self(command)
    }
}

/// Whether `uid` may use the control socket of a daemon running as
/// `self_uid`: the daemon's own uid, root, or a listed uid.
pub fn is_allowed(uid: u32, self_uid: u32, allowed: &[u32]) -> bool {
    uid == self_uid || uid == 0 || allowed.contains(&uid)
}

/// Who may connect. [`AccessPolicy::new`] is the policy the issue asks for;
/// the fields exist so tests can build one that refuses the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The daemon's effective uid.
    pub self_uid: u32,
    /// Whether uid 0 is allowed (always, outside tests).
    pub allow_root: bool,
    /// Further uids (`[control] allowed_uids`).
    pub allowed_uids: Vec<u32>,
}

impl AccessPolicy {
    /// The daemon's effective uid, root, and `allowed_uids`.
    pub fn new(allowed_uids: &[u32]) -> AccessPolicy {
        AccessPolicy {
            self_uid: unixcred::effective_uid(),
            allow_root: true,
            allowed_uids: allowed_uids.to_vec(),
        }
    }

    pub fn allows(&self, uid: u32) -> bool {
        if uid == 0 && !self.allow_root {
            return self.allowed_uids.contains(&0);
        }
        is_allowed(uid, self.self_uid, &self.allowed_uids)
    }
}

/// Server settings; [`ServerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub access: AccessPolicy,
    /// Longest request line (default [`DEFAULT_MAX_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
    /// Time allowed for each request line to arrive (default 10 s).
    pub idle_timeout: Duration,
    /// Connections served at once (default 128).
    pub max_connections: usize,
    /// Time a response write may block (default 10 s).
    pub write_timeout: Duration,
    /// How long [`ControlServer::shutdown`] waits for connection threads
    /// still inside the handler (default 5 s); then it leaves them.
    pub shutdown_grace: Duration,
    /// The socket file's group (`[control] socket_group`): mode 0660 with
    /// this gid; `None`: mode 0600, the daemon's own group.
    pub group: Option<u32>,
}

impl ServerConfig {
    pub fn new(allowed_uids: &[u32], max_request_bytes: usize) -> ServerConfig {
        ServerConfig {
            access: AccessPolicy::new(allowed_uids),
            max_request_bytes,
            idle_timeout: Duration::from_secs(10),
            max_connections: 128,
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            group: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new(&[], DEFAULT_MAX_REQUEST_BYTES)
    }
}

/// What a [`Session`] wants after some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write what is in `out`, then close.
    Close,
}

/// One connection's protocol state, sans-IO: bytes in, response bytes out.
pub struct Session {
    decoder: LineDecoder,
    handler: Arc<dyn Handler>,
    requests: u64,
}

impl Session {
    pub fn new(max_request_bytes: usize, handler: Arc<dyn Handler>) -> Session {
        Session {
            decoder: LineDecoder::new(max_request_bytes),
            handler,
            requests: 0,
        }
    }

    /// Request lines answered so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Feeds received bytes; appends one response per complete request
    /// line to `out`.
    pub fn on_bytes(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) -> Flow {
        loop {
            let used = self.decoder.push(bytes);
            bytes = &bytes[used..];
            let mut progressed = used > 0;
            while let Some(line) = self.decoder.next_line() {
                progressed = true;
                match line {
                    Ok(line) => self.answer(&line, out),
                    Err(e) => {
                        let error = ErrorBody::new(ErrorKind::TooLarge, e.to_string());
                        encode_response(&Response::error(Value::Null, error), out);
                        return Flow::Close;
                    }
                }
            }
            if bytes.is_empty() || !progressed {
                return Flow::Continue;
            }
        }
    }

    /// End of input: answers an unterminated last line, if any.
    pub fn on_eof(&mut self, out: &mut Vec<u8>) {
        if let Some(line) = self.decoder.finish() {
            self.answer(&line, out);
        }
    }

    fn answer(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.requests += 1;
        let response = match decode_request(line) {
            Err(response) => response,
            Ok(request) => {
                let name = request.command.name();
                let handler = &self.handler;
                match catch_unwind(AssertUnwindSafe(|| handler.handle(request.command))) {
                    Ok(Ok(result)) => Response::ok(request.id, result),
                    Ok(Err(error)) => Response::error(request.id, error),
                    Err(_) => {
                        log::error!("control socket: the handler panicked on \"{name}\"");
                        Response::error(
                            request.id,
                            ErrorBody::new(
                                ErrorKind::Failed,
                                format!("internal error while running \"{name}\""),
                            ),
                        )
                    }
                }
            }
        };
        encode_response(&response, out);
    }
}

/// The connections being served, so shutdown can close them.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, UnixStream>>,
    closed: Condvar,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running control socket. [`shutdown`](Self::shutdown) or drop stops
/// it: no new connections, open ones closed, the socket file removed.
pub struct ControlServer {
    path: PathBuf,
    /// Identity of the socket file we created, so we never remove another.
    ino: (u64, u64),
    listener: Arc<UnixListener>,
    stop: Arc<AtomicBool>,
    connections: Arc<Connections>,
    accept: Option<JoinHandle<()>>,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Starts serving at `path` with the default timeouts and limits.
    pub fn start(
        path: &Path,
        allowed_uids: &[u32],
        group: Option<u32>,
        max_request_bytes: usize,
        handler: Arc<dyn Handler>,
    ) -> io::Result<ControlServer> {
        let config = ServerConfig {
            group,
            ..ServerConfig::new(allowed_uids, max_request_bytes)
        };
        Self::start_with(path, config, handler)
    }

    /// Starts serving at `path` with explicit settings.
    pub fn start_with(
        path: &Path,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<ControlServer> {
        let listener = bind_private(path, config.group)?;
        let meta = std::fs::symlink_metadata(path)?;
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Connections::default());
        let shutdown_grace = config.shutdown_grace;
        let accept = {
            let (listener, stop, connections) =
                (listener.clone(), stop.clone(), connections.clone());
            std::thread::Builder::new()
                .name("meshgate-ctl".to_owned())
                .spawn(move || accept_loop(&listener, &stop, &connections, &config, &handler))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(path);
                })?
        };
        log::info!("control socket listening on {}", path.display());
        Ok(ControlServer {
            path: path.to_owned(),
            ino: (meta.dev(), meta.ino()),
            listener,
            stop,
            connections,
            accept: Some(accept),
            shutdown_grace,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections being served right now.
    pub fn open_connections(&self) -> usize {
        self.connections.lock().len()
    }

    /// Stops accepting, closes open connections, removes the socket file
    /// and joins the accept thread. Connection threads still inside the
    /// handler get [`ServerConfig::shutdown_grace`] to finish, then are
    /// left to finish alone. Do not call it from inside a handler.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        wake_accept(&self.listener, &self.path);
        let _ = accept.join();
        // Remove the file only if it is still the one we bound.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
        let deadline = Instant::now() + self.shutdown_grace;
        let mut open = self.connections.lock();
        for stream in open.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "control socket: {} connection(s) still busy at shutdown",
                    open.len()
                );
                break;
            }
            open = self
                .connections
                .closed
                .wait_timeout(open, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        log::info!("control socket {} closed", self.path.display());
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Makes a blocked `accept` return: shutting a listening socket down wakes
/// its waiters with `EINVAL` on Linux. The listener is borrowed as a stream
/// only for the `shutdown(2)` call (on a duplicate descriptor of the same
/// socket). A connect to the path is the fallback.
fn wake_accept(listener: &UnixListener, path: &Path) {
    if let Ok(dup) = listener.as_fd().try_clone_to_owned() {
        let as_stream = UnixStream::from(dup);
        if as_stream.shutdown(std::net::Shutdown::Both).is_ok() {
            return;
        }
    }
    let _ = UnixStream::connect(path);
}

/// Binds `path` so that the socket is never reachable with a mode other
/// than 0600, after checking that no live server owns it.
/// The socket file's permissions: 0600, or 0660 with group `group`.
fn restrict(path: &Path, group: Option<u32>) -> io::Result<()> {
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The gid of `spec`: a number, or a group name looked up in `/etc/group`.
pub fn resolve_group(spec: &str) -> io::Result<u32> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == spec).then_some(gid)
        })
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no group {spec:?} in /etc/group"),
            )
        })
}

fn bind_private(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    if std::os::unix::net::SocketAddr::from_pathname(path).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "control socket path {} is too long for a Unix socket (at most 107 bytes)",
                path.display()
            ),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another server is answering on the control socket {}",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::info!("removing stale control socket {}", path.display());
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        },
    }

    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    static STAGING: AtomicU64 = AtomicU64::new(0);
    let staging = parent.join(format!(
        ".meshgate-ctl.{}.{}",
        std::process::id(),
        STAGING.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = staging.join("s");
    if std::os::unix::net::SocketAddr::from_pathname(&tmp).is_err() {
        // The staging path is too long for a socket address although the
        // final one fits: bind in place and chmod at once. Until the chmod
        // the file has the umask's mode; the uid check still guards every
        // connection.
        let listener = UnixListener::bind(path)?;
        restrict(path, group)?;
        return Ok(listener);
    }
    // Left over from a crashed process that had our pid.
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let result = (|| {
        let listener = UnixListener::bind(&tmp)?;
        restrict(&tmp, group)?;
        // `rename` would replace a socket a concurrent starter bound at
        // `path` meanwhile; refuse instead (a narrow race remains).
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} appeared while binding", path.display()),
            ));
        }
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn accept_loop(
    listener: &UnixListener,
    stop: &Arc<AtomicBool>,
    connections: &Arc<Connections>,
    config: &ServerConfig,
    handler: &Arc<dyn Handler>,
) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(config.write_timeout));
        match unixcred::peer_cred(stream.as_fd()) {
            Ok(cred) if config.access.allows(cred.uid) => {}
            Ok(cred) => {
                log::warn!(
                    "control socket: refused peer uid {} pid {}: not the daemon's uid, root \
                     or in [control] allowed_uids",
                    cred.uid,
                    cred.pid
                );
                refuse(
                    stream,
                    ErrorKind::PermissionDenied,
                    &format!("uid {} may not use this control socket", cred.uid),
                );
                continue;
            }
            Err(e) => {
                log::warn!("control socket: cannot read peer credentials: {e}");
                refuse(
                    stream,
                    ErrorKind::PermissionDenied,
                    "peer credentials unavailable",
                );
                continue;
            }
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = connections.lock();
            if open.len() >= config.max_connections {
                drop(open);
                refuse(stream, ErrorKind::Failed, "too many control connections");
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => {
                    open.insert(id, clone);
                }
                Err(e) => {
                    drop(open);
                    log::warn!("control socket: {e}");
                    refuse(stream, ErrorKind::Failed, "out of resources");
                    continue;
                }
            }
        }
        let session = Session::new(config.max_request_bytes, handler.clone());
        let idle = config.idle_timeout;
        let conns = connections.clone();
        let stopping = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("meshgate-ctl-conn".to_owned())
            .spawn(move || {
                serve(stream, session, idle, &stopping);
                conns.lock().remove(&id);
                conns.closed.notify_all();
            });
        if let Err(e) = spawned {
            log::warn!("control socket: cannot start a connection thread: {e}");
            if let Some(stream) = connections.lock().remove(&id) {
                refuse(stream, ErrorKind::Failed, "out of resources");
            }
        }
    }
}

/// Answers once and closes, without reading.
fn refuse(mut stream: UnixStream, kind: ErrorKind, message: &str) {
    let mut out = Vec::new();
    encode_response(
        &Response::error(Value::Null, ErrorBody::new(kind, message)),
        &mut out,
    );
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// One connection's thread: reads with a deadline per request line, feeds
/// the session, writes its responses.
fn serve(mut stream: UnixStream, mut session: Session, idle: Duration, stop: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let mut deadline = Instant::now() + idle;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            log::debug!("control socket: closing an idle connection");
            return;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                if stop.load(Ordering::SeqCst) {
                    // Shut down by the server: run no half-sent request.
                    return;
                }
                session.on_eof(&mut out);
                let _ = stream.write_all(&out);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                log::debug!("control socket: closing an idle connection");
                return;
            }
            Err(e) => {
                log::debug!("control socket: read failed: {e}");
                return;
            }
        };
        let before = session.requests();
        let flow = session.on_bytes(&buf[..n], &mut out);
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out) {
                log::debug!("control socket: write failed: {e}");
                return;
            }
            out.clear();
        }
        if flow == Flow::Close {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if session.requests() != before {
            deadline = Instant::now() + idle;
        }
    }
}
