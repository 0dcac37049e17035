//! Sans-I/O codecs: plain functions and state machines over bytes. Nothing in
//! here touches a socket or reads a clock. `chat` maps the hub's domain types
//! (requests, events) to and from each wire; the rest knows nothing of the hub.

pub mod chat;
pub mod http;
pub mod json;
pub mod line;
pub mod resp;
pub mod ws;
