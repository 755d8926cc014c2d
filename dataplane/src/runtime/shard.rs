//! Shard threads: one per core, each pinned and running its own runtime.

use std::io;
use std::thread;

/// A running shard thread.
#[derive(Debug)]
pub struct ShardThread {
    pub id: usize,
    pub handle: thread::JoinHandle<()>,
}

/// How many shards `"auto"` means on this host: one per available core.
pub fn auto_shard_count() -> usize {
    thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Starts one thread per element of `inits`, named `shard-N`, pinning shard
/// N to the Nth core (modulo the cores available) when `pin` is set, and
/// runs `body(N, inits[N])` on it.
pub fn spawn_shards<T, F>(inits: Vec<T>, pin: bool, body: F) -> io::Result<Vec<ShardThread>>
where
    T: Send + 'static,
    F: Fn(usize, T) + Send + Clone + 'static,
{
    let cores = if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut threads = Vec::with_capacity(inits.len());
    for (id, init) in inits.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let body = body.clone();
        let handle = thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || {
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    log::warn!("shard {id}: could not pin to core {}", core.id);
                }
                body(id, init);
            })?;
        threads.push(ShardThread { id, handle });
    }
    Ok(threads)
}
