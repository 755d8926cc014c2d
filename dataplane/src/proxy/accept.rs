//! The accept loop of one listener on one shard, and the start of each
//! connection: TLS handshake (with the listener's current config), the
//! caller's identity, then the HTTP/1.1 request loop or, on a TCP
//! listener, the byte relay.
//!
//! Uses `net` (listener, streams), `tls` (handshake, identity),
//! [`super::context`], and hands the connection to [`super::http1`] or
//! [`super::tcp`].

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::conn::ConnInfo;
use super::context::ShardContext;
use super::{http1, tcp};
use crate::net::{ByteStream, Duplex, Listener, Plain, Stream};
use crate::route::{Protocol, Snapshot};
use crate::runtime;
use crate::tls::TlsStream;

/// Accepts connections forever, one task each. Beyond the listener's
/// `max_connections` (per shard) a new connection is closed at once.
pub async fn accept_loop(ctx: Rc<ShardContext>, name: Rc<str>, mut listener: Listener) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                ctx.stats.connections_accepted.incr();
                let limit = ctx
                    .with_snapshot(|s| s.listener(&name).map_or(0, |l| l.limits.max_connections));
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
                let open = open.clone();
                let ctx = ctx.clone();
                let name = name.clone();
                runtime::spawn(async move {
                    handle_connection(ctx, name, stream).await;
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

async fn handle_connection(ctx: Rc<ShardContext>, name: Rc<str>, tcp: Stream) {
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
                    stream.release_buffers();
                    let identity = stream.peer_identity();
                    let peer_chain = stream.peer_chain();
                    let info = ConnInfo {
                        verified_by: peer_chain.is_some().then(|| tls.clone()),
                        peer_chain,
                        peer,
                        proto: "https",
                        xfcc: identity.as_ref().map(|id| id.xfcc()),
                        spiffe_id: identity.as_ref().and_then(|id| id.spiffe_id.clone()),
                        authenticated: identity.is_some(),
                        listener: name,
                    };
                    serve(ctx, snapshot, stream, info, protocol).await;
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
                listener: name,
            };
            serve(ctx, snapshot, Plain(tcp), info, protocol).await;
        }
    }
}

async fn serve<S: ByteStream + Duplex>(
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
