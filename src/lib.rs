//! MultiUserChat: one single-threaded `mio` poll loop serving a chat over
//! newline-delimited JSON and plain text (TCP), WebSocket and HTTP.
//!
//! Bytes flow one way:
//!
//! ```text
//! socket → conn → session (decode, per wire) → hub (chat domain) → effects
//!        → session::Encoded (encode once per format) → conn (queue) → socket
//! ```
//!
//! - [`server`]: the poll loop: accepts, reads, writes, runs the deadline
//!   queue, dispatches bytes to sessions and the hub's effects to connections;
//!   knows no wire (and owns the place for outbound links).
//! - [`conn`]: one client: socket, leftover input, shared output queue, and its
//!   lifecycle (queue with the output limit, end with a reason, kill).
//! - [`session`]: one sans-I/O session per wire (chat lines, WebSocket, HTTP):
//!   bytes, ticks and join outcomes in; bytes, hub requests and close
//!   decisions out.
//! - [`proto`]: sans-I/O codecs: lines, JSON, the chat's JSON and text
//!   mappings, WebSocket, HTTP.
//! - [`hub`]: the chat domain: directory, rooms, requests in, effects out;
//!   no wire vocabulary, no I/O, time passed in.
//! - [`store`]: the durable room history: a segmented, checksummed log in the
//!   data directory (group commit per turn, recovery, retention, paging).
//! - [`web`]: the static files (embedded or from a directory) behind the HTTP port.
//! - [`cluster`]: the Redis links' protocols for scale-out (not wired in yet).
//! - [`config`]: every flag, port, limit and timeout in one struct.
//!
//! Imports point down this list's flow: `server` → `conn`, `session` →
//! `proto` → `hub`; the hub imports none of them, and reaches the `store`
//! only through its `Archive` port, which the server fills.

pub mod cluster;
pub mod config;
pub mod conn;
pub mod hub;
pub mod proto;
pub mod server;
pub mod session;
pub mod store;
pub mod web;
