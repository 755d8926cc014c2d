//! `harness`: what the end-to-end tests in `tests/tests/` use to run the real
//! `meshgate` binary against real clients and a real origin.
//!
//! | module | owns |
//! | --- | --- |
//! | [`tempdir`] | [`TempDir`]: a unique scratch folder, removed on drop |
//! | [`pki`] | [`Pki`]: CA, server and client certificates written as PEM files |
//! | [`upstream`] | [`Upstream`]: a hand-written HTTP/1.1 origin with test endpoints |
//! | [`scripted`] | [`Scripted`]: an origin that answers with canned (often broken) bytes |
//! | [`gateway`] | [`Gateway`]: the daemon as a child process, and its config text ([`GatewayConfig`]) |
//! | [`client`] | clients: [`curl`], [`raw_plain`] / [`RawConn`], [`tls_client`], response parsing |
//! | [`bench`] | [`BenchUpstream`] (`meshbench upstream`) and [`meshbench`] load runs |
//! | [`nginx`] | [`Nginx`]: nginx as a static-file origin |
//! | [`setup`] | [`Setup`]: folder + certificates + origin + gateway in one call |
//!
//! Why it is built this way (STYLE.md §11 (d)): these tests check the binary
//! as an operator runs it, so nothing here links the gateway's crates. The
//! origin's HTTP/1.1 code is written independently of the dataplane codec,
//! so a codec bug cannot hide itself by being on both sides of the exchange.
//!
//! Rules every helper follows: loopback addresses only; every listener binds
//! port 0 (tests run in parallel); only processes started here are stopped,
//! by PID; no assertion depends on how fast anything runs (timeouts only
//! bound how long a broken gateway can hang a test).
//!
//! Helpers panic with a message saying what went wrong (this is test code);
//! set `MESHGATE_E2E_KEEP=1` to keep temporary folders (certificates,
//! configs, the gateway's stderr) for inspection.

pub mod bench;
pub mod client;
pub mod gateway;
pub mod nginx;
pub mod pki;
pub mod scripted;
pub mod setup;
pub mod tempdir;
pub mod upstream;

use std::path::{Path, PathBuf};

pub use client::{
    RawConn, RawRead, Response, TlsConn, curl, describe, fields_in_head, openssl_s_client,
    parse_response, raw_plain, split_responses, tls_client, tls_client_with, tls_connect,
};
pub use gateway::{Gateway, GatewayConfig, LISTENER, meshgate_bin, meshgate_command};
pub use nginx::{Listen, Nginx};
pub use pki::{Pki, SPIFFE_ID};
pub use scripted::Scripted;
pub use setup::Setup;
pub use tempdir::TempDir;
pub use upstream::Upstream;

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// `limit` (which only bounds how long a broken gateway can hang a test).
pub fn wait_until(limit: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent folder")
        .to_owned()
}

/// `n` deterministic bytes, the same ones [`Upstream`] serves at `/bytes/N`
/// and `/chunked/N`. Not periodic over short spans (an xorshift stream), so
/// a dropped, repeated or shifted block changes the digest.
pub fn pattern(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (n - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

/// Lowercase hex SHA-256 of a file's contents, read in pieces.
pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("cannot open {} to hash it: {e}", path.display()));
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    hex(ctx.finish().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Finds an executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then
/// released). Another process may take it before the caller binds it; use
/// it only where the caller can retry, or where nothing must listen on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pattern_is_deterministic_and_prefix_stable() {
        assert_eq!(pattern(1000), pattern(1000));
        assert_eq!(&pattern(1003)[..1000], &pattern(1000)[..]);
        assert_ne!(&pattern(16)[..8], &pattern(16)[8..]);
    }
}
