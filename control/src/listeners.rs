//! Binding listeners: one `SO_REUSEPORT` socket per listener per shard,
//! bound on the control thread before any shard starts (so a bad or busy
//! address fails with a message naming the listener). A listener with port
//! 0 gets the port the kernel chose for the first shard's socket; every
//! other shard binds that same port.
//!
//! Uses the runtime's `BoundSocket`, the snapshot and [`crate::error`].

use std::net::SocketAddr;

use dataplane::route::Snapshot;
use dataplane::runtime::BoundSocket;

use crate::error::DaemonError;

/// A listener as started: its name and the address it really listens on.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: bool,
}

/// One shard's listening sockets, by listener name.
pub(crate) type ShardSockets = Vec<(String, BoundSocket)>;

/// Binds `shards` sockets per listener.
pub(crate) fn bind_all(
    snapshot: &Snapshot,
    shards: usize,
) -> Result<(Vec<ShardSockets>, Vec<BoundListener>), DaemonError> {
    let mut per_shard: Vec<ShardSockets> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for l in &snapshot.listeners {
        let (sockets, listener) = bind_listener(&l.name, l.address, l.tls.is_some(), shards)?;
        for (i, s) in sockets.into_iter().enumerate() {
            per_shard[i].push((l.name.clone(), s));
        }
        bound.push(listener);
    }
    Ok((per_shard, bound))
}

/// Binds one `SO_REUSEPORT` socket per shard for a listener. With port 0
/// the first socket's kernel-chosen port is used for the others.
pub(crate) fn bind_listener(
    name: &str,
    address: SocketAddr,
    tls: bool,
    shards: usize,
) -> Result<(Vec<BoundSocket>, BoundListener), DaemonError> {
    let err = |address, source| DaemonError::Bind {
        name: name.to_owned(),
        address,
        source,
    };
    let first = BoundSocket::bind(address, true).map_err(|e| err(address, e))?;
    let actual = first.local_addr();
    let mut sockets = vec![first];
    for _ in 1..shards {
        sockets.push(BoundSocket::bind(actual, true).map_err(|e| err(actual, e))?);
    }
    Ok((
        sockets,
        BoundListener {
            name: name.to_owned(),
            address: actual,
            tls,
        },
    ))
}
