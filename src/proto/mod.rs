//! Sans-I/O codecs: plain functions and state machines over bytes. Nothing in
//! here touches a socket, reads a clock or knows about the hub.

pub mod chat;
pub mod http;
pub mod json;
pub mod line;
pub mod ws;
