//! meshgate's control plane: configuration, snapshot compilation and the daemon.

pub mod config;
