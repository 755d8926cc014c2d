//! A blocking control-socket client: one connection, any number of calls.
//! Used by `meshctl` and by tests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::protocol::{Command, PROTOCOL_VERSION, Request, Response, encode_request};

/// The longest response line accepted (a trusted daemon's `config show`
/// or `stats` stays far below).
pub const MAX_RESPONSE_BYTES: u64 = 256 << 20;

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket file, or nobody listening on it.
    #[error("meshgate is not running (no control socket at {})", path.display())]
    NotRunning { path: PathBuf },
    /// The socket (or its folder) is not accessible to this user.
    #[error("permission denied on the control socket {}", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to the control socket {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("no reply from meshgate within {0:?}")]
    Timeout(Duration),
    #[error("meshgate closed the connection without a reply")]
    Closed,
    #[error("unreadable reply from meshgate: {0}")]
    BadResponse(String),
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}

/// One connection to the control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: Option<Duration>,
    next_id: u64,
}

impl Client {
    /// Connects; `timeout` bounds each write and each wait for a reply.
    pub fn connect(path: &Path, timeout: Option<Duration>) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                path: path.to_owned(),
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: path.to_owned(),
            },
            _ => ClientError::Connect {
                path: path.to_owned(),
                source,
            },
        })?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            timeout,
            next_id: 1,
        })
    }

    /// Sends `command` and waits for its response.
    pub fn call(&mut self, command: Command) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request {
            id: Value::from(id),
            version: Some(PROTOCOL_VERSION),
            command,
        };
        let mut line = Vec::new();
        encode_request(&request, &mut line);
        let response = self.call_raw(&line)?;
        // A refusal (permission, too many connections) comes before the
        // request is read and carries a null id.
        if response.id != request.id && !response.id.is_null() {
            return Err(ClientError::BadResponse(format!(
                "reply to request {} instead of {id}",
                response.id
            )));
        }
        Ok(response)
    }

    /// Sends raw bytes (which should end with `\n`) and reads one response
    /// line. A failed write still looks for a reply: the server answers a
    /// refused peer without reading its request.
    pub fn call_raw(&mut self, bytes: &[u8]) -> Result<Response, ClientError> {
        let written = self.writer.write_all(bytes);
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_RESPONSE_BYTES)
            .read_until(b'\n', &mut line);
        match read {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::Timeout(self.timeout.unwrap_or_default()));
            }
            Err(e) => {
                return Err(written.err().unwrap_or(e).into());
            }
        }
        if line.last() != Some(&b'\n') {
            if let Err(e) = written {
                return Err(e.into());
            }
            return Err(if line.is_empty() {
                ClientError::Closed
            } else {
                ClientError::BadResponse("reply not terminated by a newline".to_owned())
            });
        }
        serde_json::from_slice(&line).map_err(|e| ClientError::BadResponse(e.to_string()))
    }
}
