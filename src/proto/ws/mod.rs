//! RFC 6455 WebSocket, server side, sans-I/O: the opening handshake, the frame
//! codec, close codes, an incremental UTF-8 check and the per-connection
//! session state machine. Nothing here touches a socket or reads a clock.
//!
//! - [`handshake`]: HTTP/1.1 upgrade request → `101` response or HTTP error response.
//! - [`frame`]: opcodes, client frame headers, masking, server frame encoding.
//! - [`close`]: [`CloseCode`] and the close frame body.
//! - [`utf8`]: streaming UTF-8 validation for text messages.
//! - [`session`]: [`WsSession`]: bytes in → [`WsEvent`]s and reply bytes out.
//!
//! Typical use by a connection: feed received bytes to
//! [`handshake::parse_request`] until it returns a request, send
//! [`handshake::response_101`], then pass every later byte (starting with any
//! left after the request head) to [`WsSession::handle_bytes`], send `reply`,
//! and close the TCP connection once [`WsSession::is_closing`] and `reply`
//! is flushed.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod session;
pub mod utf8;

pub use close::CloseCode;
pub use frame::{Opcode, encode_frame, frame_header};
pub use handshake::{
    HandshakeConfig, HandshakeError, HandshakeRequest, accept_key, parse_request, response_101,
};
pub use session::{WsEvent, WsLimits, WsSession};
