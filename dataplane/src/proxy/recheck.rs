//! Rechecking a live connection after the configuration changed: its
//! client certificate against the listener's current TLS configuration (a
//! reload may have added a revocation list that names it, or replaced the
//! CA), and — for a TCP connection, which has no request boundary at which
//! rules are looked at — the listener's authorization rules.
//!
//! Cheap when nothing changed: one pointer comparison. The certificate is
//! verified again only once per reload of the listener's TLS files.
//!
//! Uses `tls` (the verifier), `route::authz` and the runtime's wall clock.

use super::conn::ConnInfo;
use super::context::ShardContext;
use crate::route::Snapshot;
use crate::route::authz::{self, Verdict};
use crate::runtime;

/// Why a connection may not go on.
#[derive(Debug)]
pub(crate) enum Recheck {
    /// Its certificate no longer verifies (revoked, expired, unknown CA).
    Certificate(crate::tls::TlsError),
    /// The listener's rules (or its TCP route's) refuse the caller now.
    Forbidden(std::sync::Arc<str>),
}

impl std::fmt::Display for Recheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recheck::Certificate(e) => write!(f, "client certificate no longer valid: {e}"),
            Recheck::Forbidden(rule) => write!(f, "refused by rule {rule:?} after a change"),
        }
    }
}

/// Whether `conn` may go on under `snapshot`; `tcp`: check the rules too.
/// Counted and logged when not.
pub(crate) fn recheck(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    conn: &mut ConnInfo,
    tcp: bool,
) -> Result<(), Recheck> {
    let Some(listener) = snapshot.listener(&conn.listener) else {
        return Ok(());
    };
    let result = (|| {
        if let (Some(chain), Some(tls), Some(seen)) =
            (&conn.peer_chain, &listener.tls, &conn.verified_by)
            && !tls.same_as(seen)
        {
            tls.recheck(chain, runtime::wall_clock())
                .map_err(Recheck::Certificate)?;
            conn.verified_by = Some(tls.clone());
        }
        if tcp
            && let (Verdict::Deny(rule), _) = authz::authorize_connection(listener, &conn.caller())
        {
            return Err(Recheck::Forbidden(rule.clone()));
        }
        Ok(())
    })();
    if let Err(why) = &result {
        ctx.stats.connections_rechecked_closed.incr();
        if let Recheck::Forbidden(rule) = why {
            ctx.named.borrow_mut().forbidden(&conn.listener, None, rule);
            ctx.stats.forbidden.incr();
        }
        log::info!(
            "listener {:?}: closing the connection of {} ({}): {why}",
            conn.listener,
            conn.peer,
            conn.spiffe_id.as_deref().unwrap_or("no identity"),
        );
    }
    result
}
