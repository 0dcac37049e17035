//! Scale-out through Redis: the protocol pieces of a node's two links to
//! Redis, sans-I/O like the rest (the loop moves the bytes through its
//! outbound links, `server::link`).
//!
//! - [`pipeline`]: the command link: commands pipelined, replies matched in
//!   order, caps on what waits, a reply timeout.
//! - [`subscriber`]: the subscription link: wanted channels kept subscribed
//!   across reconnects, messages out, `PING` on silence.
//!
//! Not wired into the server yet: the cluster protocol (names, room order
//! through a Lua script, presence) builds on these.

pub mod keys;
pub mod node;
#[cfg(test)]
mod node_tests;
pub mod pipeline;
pub mod scripts;
pub mod subscriber;
pub mod wire;
