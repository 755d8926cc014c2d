//! The accept loop of one listener on one shard, and the start of each
//! connection: TLS handshake (with the listener's current config), the
//! caller's identity, then the HTTP/1.1 request loop, the HTTP/2
//! connection (ALPN `h2`) or, on a TCP listener, the byte relay.
//!
//! Uses `net` (listener, streams), `tls` (handshake, identity),
//! [`super::context`], and hands the connection to [`super::http1`] or
//! [`super::tcp`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use super::conn::ConnInfo;
use super::context::ShardContext;
use super::http2::prior_knowledge::{self, Prefixed, Sniffed};
use super::{http1, http2, tcp};
use crate::net::{ByteStream, Duplex, Listener, Plain, Stream};
use crate::route::{Protocol, Snapshot};
use crate::runtime;
use crate::tls::TlsStream;

/// Open connections of one listener on this shard, by source address and
/// by client identity (entries go when their count does: the maps hold
/// only what is open).
#[derive(Default)]
struct Occupancy {
    by_source: HashMap<IpAddr, u32>,
    by_identity: HashMap<String, u32>,
}

/// One connection's place in its listener's [`Occupancy`].
struct Held {
    occupancy: Rc<RefCell<Occupancy>>,
    source: IpAddr,
    identity: Option<String>,
}

impl Held {
    /// Counts the connection under `identity`, unless `limit` (non-zero)
    /// connections of it are already open.
    fn claim_identity(&mut self, identity: String, limit: u32) -> bool {
        let mut occ = self.occupancy.borrow_mut();
        let n = occ.by_identity.entry(identity.clone()).or_default();
        if limit != 0 && *n >= limit {
            if *n == 0 {
                occ.by_identity.remove(&identity);
            }
            return false;
        }
        *n += 1;
        self.identity = Some(identity);
        true
    }
}

/// Counts one fewer under `key`, forgetting it at zero.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut occ = self.occupancy.borrow_mut();
        release(&mut occ.by_source, &self.source);
        if let Some(id) = self.identity.take() {
            release(&mut occ.by_identity, &id);
        }
    }
}

/// Accepts connections forever, one task each. Beyond the listener's
/// `max_connections`, or `max_connections_per_source` from one address
/// (both per shard), a new connection is closed at once.
pub async fn accept_loop(ctx: Rc<ShardContext>, name: Rc<str>, mut listener: Listener) {
    let open = Rc::new(Cell::new(0usize));
    let occupancy = Rc::new(RefCell::new(Occupancy::default()));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                ctx.stats.connections_accepted.incr();
                let (limit, per_source) = ctx.with_snapshot(|s| {
                    s.listener(&name).map_or((0, 0), |l| {
                        (
                            l.limits.max_connections,
                            l.limits.max_connections_per_source,
                        )
                    })
                });
                let source = stream.peer_addr().ip();
                let from_source = occupancy.borrow().by_source.get(&source).copied();
                if per_source != 0 && from_source.unwrap_or(0) >= per_source {
                    ctx.stats.connections_limited.incr();
                    log::debug!(
                        "listener {name:?}: {per_source} connections from {source} open, refusing"
                    );
                    drop(stream);
                    continue;
                }
                if limit != 0 && open.get() >= limit {
                    ctx.stats.connections_refused.incr();
                    log::debug!(
                        "listener {name:?}: {} connections open, refusing {}",
                        open.get(),
                        stream.peer_addr()
                    );
                    drop(stream);
                    continue;
                }
                open.set(open.get() + 1);
                *occupancy.borrow_mut().by_source.entry(source).or_default() += 1;
                let held = Held {
                    occupancy: occupancy.clone(),
                    source,
                    identity: None,
                };
                let open = open.clone();
                let ctx = ctx.clone();
                let name = name.clone();
                runtime::spawn(async move {
                    handle_connection(ctx, name, stream, held).await;
                    open.set(open.get() - 1);
                });
            }
            Err(e) => {
                // Typically EMFILE/ENFILE: back off instead of spinning.
                log::warn!("shard {}: accept on listener {name:?}: {e}", ctx.id);
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Counts the connection as active while alive.
struct ActiveGuard(Rc<ShardContext>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.stats.connections_active.decr();
    }
}

async fn handle_connection(ctx: Rc<ShardContext>, name: Rc<str>, tcp: Stream, mut held: Held) {
    ctx.stats.connections_active.incr();
    let _active = ActiveGuard(ctx.clone());
    let snapshot = ctx.snapshot();
    let Some(listener) = snapshot.listener(&name) else {
        return; // removed since the socket was bound
    };
    let peer = tcp.peer_addr();
    let protocol = listener.protocol;
    match listener.tls.clone() {
        Some(tls) => {
            let limit = listener.limits.header_timeout;
            match TlsStream::accept(tcp, &tls, limit).await {
                Ok(mut stream) => {
                    ctx.stats.tls_handshakes.incr();
                    let tls_version = stream.protocol_version().unwrap_or("unknown");
                    let tls_cipher = stream.cipher_suite().unwrap_or("unknown");
                    ctx.named.borrow_mut().tls_handshake(
                        tls_version,
                        stream.key_exchange_group().unwrap_or("unknown"),
                    );
                    stream.release_buffers();
                    let identity = stream.peer_identity();
                    // Over the per-identity limit: closed before any
                    // request is read.
                    let per_identity = listener.limits.max_connections_per_identity;
                    if let Some(key) = identity.as_ref().and_then(|id| id.principal())
                        && !held.claim_identity(key.to_owned(), per_identity)
                    {
                        ctx.stats.connections_limited.incr();
                        log::debug!(
                            "listener {name:?}: {per_identity} connections of {key} open, refusing {peer}"
                        );
                        let _ =
                            runtime::timeout(Duration::from_secs(1), stream.close_write()).await;
                        return;
                    }
                    let h2 = stream.alpn() == Some(b"h2");
                    let peer_chain = stream.peer_chain();
                    let info = ConnInfo {
                        verified_by: peer_chain.is_some().then(|| tls.clone()),
                        peer_chain,
                        peer,
                        proto: "https",
                        xfcc: identity.as_ref().map(|id| id.xfcc()),
                        spiffe_id: identity.as_ref().and_then(|id| id.spiffe_id.clone()),
                        authenticated: identity.is_some(),
                        tls: Some((tls_version, tls_cipher)),
                        sni: stream.server_name().map(Into::into),
                        listener: name,
                        http2: false,
                    };
                    match protocol {
                        Protocol::Http if h2 => http2::serve(ctx, snapshot, stream, info).await,
                        _ => serve(ctx, snapshot, stream, info, protocol).await,
                    }
                }
                Err(e) => {
                    ctx.stats.tls_failures.incr();
                    ctx.named.borrow_mut().tls_failure(e.reason());
                    log::debug!(
                        "listener {name:?}: TLS handshake with {peer} failed ({}): {e}",
                        e.reason()
                    );
                }
            }
        }
        None => {
            let info = ConnInfo {
                peer,
                proto: "http",
                xfcc: None,
                spiffe_id: None,
                authenticated: false,
                peer_chain: None,
                verified_by: None,
                tls: None,
                sni: None,
                listener: name,
                http2: false,
            };
            if protocol == Protocol::Http && listener.limits.http2.h2c {
                // HTTP/2 by prior knowledge, or HTTP/1.1: the first bytes tell.
                let deadline = runtime::now() + listener.limits.header_timeout;
                let mut plain = Plain(tcp);
                let (sniffed, seen) = prior_knowledge::read_preface(&mut plain, deadline).await;
                let down = Prefixed::new(seen, plain);
                match sniffed {
                    Sniffed::Http2 => http2::serve(ctx, snapshot, down, info).await,
                    Sniffed::Http1 => http1::serve(ctx, snapshot, down, info).await,
                }
                return;
            }
            serve(ctx, snapshot, Plain(tcp), info, protocol).await;
        }
    }
}

async fn serve<S: http1::Downstream + Duplex>(
    ctx: Rc<ShardContext>,
    snapshot: std::sync::Arc<Snapshot>,
    stream: S,
    info: ConnInfo,
    protocol: Protocol,
) {
    match protocol {
        Protocol::Http => http1::serve(ctx, snapshot, stream, info).await,
        Protocol::Tcp => tcp::serve(ctx, snapshot, stream, info).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Plain;
    use crate::proxy::http1;
    use crate::tls::TlsStream;

    /// The size of what `make` returns, without calling it.
    fn size_of_return<R>(_: &impl Fn() -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every connection's task is one allocation of its future's size,
    /// held for as long as the connection lives, idle or not: the largest
    /// fixed part of an idle connection's memory (issue 15 wants it
    /// smaller). These bounds are today's sizes rounded up, so that the
    /// futures do not grow unnoticed; `--nocapture` prints them.
    #[test]
    #[allow(unreachable_code, unused_variables)]
    fn connection_futures_do_not_grow() {
        // The closures are never called: only their return types count.
        let connection = || {
            handle_connection(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        };
        let http1_tls = || {
            http1::serve::<TlsStream>(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        };
        let http1_plain = || {
            http1::serve::<Plain>(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        };
        let sizes = [
            ("handle_connection", size_of_return(&connection), 8_704),
            (
                "http1::serve::<TlsStream>",
                size_of_return(&http1_tls),
                6_144,
            ),
            // 4,608 until a try's upstream became plaintext, TLS or an
            // HTTP/2 stream (`UpstreamIo`): its read and write futures add
            // a layer, 80 bytes (the TLS and HTTP/2 arms are boxed, see
            // `upstream_conn.rs`); then 56 bytes for gRPC (the answer's
            // status, counted; the kept copy of a streamed request, boxed).
            ("http1::serve::<Plain>", size_of_return(&http1_plain), 4_800),
        ];
        for (what, size, bound) in sizes {
            eprintln!("{what} future: {size} bytes (bound {bound})");
            assert!(
                size <= bound,
                "the {what} future grew to {size} bytes (bound {bound})"
            );
        }
        eprintln!(
            "TlsStream: {} bytes, ConnInfo: {} bytes",
            std::mem::size_of::<TlsStream>(),
            std::mem::size_of::<crate::proxy::conn::ConnInfo>()
        );
    }
}
