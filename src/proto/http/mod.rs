//! Minimal sans-I/O HTTP/1.1 for the web client: request heads in, response
//! heads out.
//!
//! - [`request`]: `httparse` plus limits → [`Request`] or a [`RequestError`]
//!   carrying its status code; keep-alive and WebSocket-upgrade detection.
//! - [`path`]: request-target → normalised relative path, or a [`PathError`].
//! - [`response`]: [`Response`], [`encode_head`] (the body is queued
//!   separately and shared), error responses, reason phrases, `Date` values.
//!
//! Nothing here touches a socket, reads the clock or knows which files exist;
//! the static files live in `crate::web`.

pub mod path;
pub mod request;
pub mod response;

pub use path::{PathError, normalize};
pub use request::{Method, Request, RequestError, RequestLimits, parse};
pub use response::{Response, encode_head, error, http_date, reason, sends_body, status_has_body};
