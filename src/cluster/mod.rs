//! Scale-out through Redis: the protocol pieces of a node's two links to
//! Redis and of what the nodes share there, sans-I/O like the rest (the loop
//! moves the bytes through its outbound links, `server::link`).
//!
//! - [`pipeline`]: the command link: commands pipelined, replies matched in
//!   order, caps on what waits, a reply timeout.
//! - [`subscriber`]: the subscription link: wanted channels kept subscribed
//!   across reconnects, messages out, `PING` on silence.
//! - [`keys`]: the names of the shared keys and channels, under one prefix.
//! - [`scripts`]: the Lua scripts that do each cluster step atomically in
//!   Redis (a room line numbered, logged and published; name claims released
//!   and refreshed; private messages; topics), and the `EVALSHA` / `EVAL` /
//!   `SCRIPT LOAD` commands that run them.
//! - [`wire`]: the bytes the nodes exchange: room channel notes, line and
//!   topic payloads (history records), private messages, claim values.
//!
//! - [`node`]: one node's cluster protocol over the two links: names
//!   claimed, room lines numbered and delivered in order (gaps filled from
//!   the stream), presence, private messages; what the hub must hear.
//!
//! The loop's glue is `server::cluster`; the chat rules in cluster mode are
//! the hub's (`hub::cluster`).

pub mod keys;
pub mod node;
#[cfg(test)]
mod node_tests;
pub mod pipeline;
pub mod scripts;
pub mod subscriber;
pub mod wire;
