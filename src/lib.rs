//! MultiUserChat: one single-threaded `mio` poll loop serving a chat over
//! newline-delimited JSON and plain text (TCP), WebSocket and HTTP.
//!
//! Bytes flow one way:
//!
//! ```text
//! socket → conn (buffers) → proto (decode) → hub (chat rules) → proto (encode once per format) → conn (queue) → socket
//! ```
//!
//! - [`server`]: the poll loop; accepts, reads, writes, runs timers; knows no protocol details.
//! - [`conn`]: one client: its socket, leftover input, shared output queue and wire protocol.
//! - [`proto`]: sans-I/O codecs: lines, JSON, chat messages, WebSocket, HTTP.
//! - [`hub`]: users, names and routing over [`hub::ConnId`]s; never sees bytes.
//! - [`web`]: the static files (embedded or from a directory) behind the HTTP port.
//! - [`config`]: every flag, port, limit and timeout in one struct.

pub mod config;
pub mod conn;
pub mod hub;
pub mod proto;
pub mod server;
pub mod session;
pub mod web;
