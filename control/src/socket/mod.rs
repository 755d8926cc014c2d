//! The control socket: the versioned line-JSON protocol ([`protocol`]) and
//! its line framing ([`framing`]), the server on blocking threads beside
//! the control thread ([`server`]), the blocking client `meshctl` uses
//! ([`client`]) and the human rendering of results ([`render`]).
//!
//! The protocol, its message shapes and its evolution rules are documented
//! in [`protocol`]. The server never runs on a shard: a command reaches the
//! daemon through the [`Handler`] it is given.

pub mod client;
pub mod framing;
pub mod protocol;
pub mod render;
pub mod server;

#[cfg(test)]
mod tests;

pub use client::{Client, ClientError};
pub use protocol::{
    Command, DEFAULT_MAX_REQUEST_BYTES, ErrorBody, ErrorKind, LineDecoder, PROTOCOL_VERSION,
    Request, Response, TooLarge, decode_request, encode_request, encode_response,
};
pub use server::{AccessPolicy, ControlServer, Handler, ServerConfig, Session, is_allowed};
