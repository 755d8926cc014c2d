//! meshgate's control plane: configuration, snapshot compilation and the
//! daemon that runs the shards.
//!
//! | module | owns |
//! |---|---|
//! | [`admin`] | the admin HTTP listener: `/metrics`, `/ready`, `/live` |
//! | [`access_log`] | the access-log writer thread: queue, files, reopen |
//! | [`config`] | TOML schema, validation with positioned errors, compile → `Snapshot` |
//! | [`daemon`] | starting shards, signals, reload: the process's main loop |
//! | [`listeners`] | binding every shard's listening sockets |
//! | [`error`] | why the daemon could not start, or a change was refused |
//! | [`quickstart`] | the embedded default: certificates, demo config |
//! | [`demo`] | the quickstart's demo upstream |
//! | [`health`] | active health checks on their own thread |
//! | [`logging`] | the stderr logger |
//! | [`running`] | the running gateway: snapshot, config, counters, the one apply path |
//! | [`commands`] | control-socket commands carried out against the running gateway |
//! | [`socket`] | the control socket: versioned protocol, server, client (`meshctl`) |

pub mod access_log;
pub mod admin;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod health;
pub mod listeners;
pub mod logging;
pub mod quickstart;
pub mod running;
pub mod socket;
pub mod top;
pub mod trace_export;
pub mod worker;
