//! meshgate's control plane: configuration, snapshot compilation and the
//! daemon that runs the shards.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | TOML schema, validation with positioned errors, compile → `Snapshot` |
//! | [`daemon`] | binding listeners, starting shards, signals, reload |
//! | [`quickstart`] | the embedded default: certificates, demo config |
//! | [`demo`] | the quickstart's demo upstream |
//! | [`logging`] | the stderr logger |
//! | [`socket`] | the control socket: versioned protocol, server, client (`meshctl`) |

pub mod config;
pub mod daemon;
pub mod demo;
pub mod logging;
pub mod quickstart;
pub mod socket;
