//! The server side of the WebSocket opening handshake (RFC 6455 §4.2):
//! parse the client's HTTP/1.1 upgrade request, check it, and produce either
//! the `101 Switching Protocols` answer or a complete HTTP error response.
//!
//! Owns header parsing (on top of `httparse`), the header size limit, the
//! Origin allow-list and the `Sec-WebSocket-Accept` computation. It does not
//! know about frames, sockets or timeouts: the caller keeps the bytes received
//! so far and calls [`parse_request`] again whenever more arrive.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most header lines accepted; more is answered like an oversized block (431).
const MAX_HEADERS: usize = 64;

/// Limits and policy for the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Largest request head (request line + headers + blank line) in bytes;
    /// a head that has not ended within this many bytes is answered with 431.
    pub max_header_bytes: usize,
    /// Accepted `Origin` values, compared ASCII case-insensitively. Empty = any
    /// Origin (and requests without one) allowed.
    pub allowed_origins: Vec<String>,
}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The request target as sent (path and query), not decoded.
    pub path: String,
    /// `Sec-WebSocket-Key`, trimmed; feeds [`accept_key`].
    pub key: String,
    /// `Origin`, if the client sent one.
    pub origin: Option<String>,
}

/// Why an upgrade request is refused. [`status`](Self::status) gives the
/// HTTP status, [`response`](Self::response) the bytes to send before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not parseable as an HTTP/1.x request head → 400.
    Malformed,
    /// The head did not end within `max_header_bytes`, or has too many lines → 431.
    HeaderTooLarge,
    /// RFC 6455 §4.1: the method must be GET → 405 with `Allow: GET`.
    MethodNotAllowed,
    /// RFC 6455 §4.2.1: HTTP/1.1 or higher is required → 400.
    HttpVersion,
    /// RFC 6455 §4.2.1 (and RFC 9112 §3.2): `Host` is required, exactly once → 400.
    MissingHost,
    /// RFC 6455 §4.2.1: `Upgrade` must contain `websocket` → 400.
    MissingUpgrade,
    /// RFC 6455 §4.2.1: `Connection` must contain the `Upgrade` token → 400.
    MissingConnectionUpgrade,
    /// RFC 6455 §4.2.2: only version 13 is spoken → 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// RFC 6455 §4.2.1: `Sec-WebSocket-Key` must be base64 of 16 bytes, sent once → 400.
    BadKey,
    /// RFC 6455 §4.2.2 / §10.2: `Origin` not in the allow-list → 403.
    ForbiddenOrigin,
    /// An upgrade request carries no body (`Content-Length` > 0 or
    /// `Transfer-Encoding`) → 400.
    UnexpectedBody,
}

impl HandshakeError {
    /// The HTTP status code of the error response.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeaderTooLarge => 431,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::ForbiddenOrigin => 403,
            HandshakeError::Malformed
            | HandshakeError::HttpVersion
            | HandshakeError::MissingHost
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::BadKey
            | HandshakeError::UnexpectedBody => 400,
        }
    }

    fn reason_phrase(&self) -> &'static str {
        match self.status() {
            431 => "Request Header Fields Too Large",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            403 => "Forbidden",
            _ => "Bad Request",
        }
    }

    /// A complete HTTP/1.1 error response with a short text body and
    /// `Connection: close`; the caller sends it and closes the connection.
    pub fn response(&self) -> Vec<u8> {
        let body = format!("{self}\n");
        let extra = match self {
            HandshakeError::MethodNotAllowed => "Allow: GET\r\n",
            // RFC 6455 §4.2.2: name the versions the server speaks.
            HandshakeError::UnsupportedVersion => {
                "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
            }
            _ => "",
        };
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
            self.status(),
            self.reason_phrase(),
            body.len(),
            extra,
            body
        )
        .into_bytes()
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::Malformed => "malformed HTTP request",
            HandshakeError::HeaderTooLarge => "request header too large",
            HandshakeError::MethodNotAllowed => "only GET can open a WebSocket",
            HandshakeError::HttpVersion => "WebSocket needs HTTP/1.1",
            HandshakeError::MissingHost => "missing or repeated Host header",
            HandshakeError::MissingUpgrade => "missing 'Upgrade: websocket'",
            HandshakeError::MissingConnectionUpgrade => "missing 'Connection: Upgrade'",
            HandshakeError::UnsupportedVersion => "unsupported WebSocket version (13 is spoken)",
            HandshakeError::BadKey => "missing or invalid Sec-WebSocket-Key",
            HandshakeError::ForbiddenOrigin => "origin not allowed",
            HandshakeError::UnexpectedBody => "an upgrade request has no body",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// Tries to parse a complete upgrade request from the start of `buf`.
///
/// `Ok(None)`: the header block is incomplete and still within
/// `max_header_bytes`; nothing is consumed, call again with more bytes.
/// `Ok(Some((n, req)))`: the request head used the first `n` bytes (anything
/// after it is already WebSocket data). `Err`: answer with
/// [`HandshakeError::response`] and close. Only the first `max_header_bytes`
/// bytes are ever parsed, so re-parsing after each read stays bounded.
pub fn parse_request(
    buf: &[u8],
    cfg: &HandshakeConfig,
) -> Result<Option<(usize, HandshakeRequest)>, HandshakeError> {
    let limit = buf.len().min(cfg.max_header_bytes);
    let head = buf.get(..limit).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= cfg.max_header_bytes {
                return Err(HandshakeError::HeaderTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeaderTooLarge),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let request = check_request(&req, cfg)?;
    Ok(Some((n, request)))
}

fn check_request(
    req: &httparse::Request<'_, '_>,
    cfg: &HandshakeConfig,
) -> Result<HandshakeRequest, HandshakeError> {
    // RFC 6455 §4.1: "The method of the request MUST be GET".
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    // RFC 6455 §4.2.1: "An HTTP/1.1 or higher GET request".
    if req.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    let path = req.path.ok_or(HandshakeError::Malformed)?.to_owned();

    let mut host = 0usize;
    let mut upgrade = false;
    let mut connection_upgrade = false;
    let mut version: Option<&[u8]> = None;
    let mut versions = 0usize;
    let mut key: Option<&[u8]> = None;
    let mut keys = 0usize;
    let mut origin: Option<&[u8]> = None;
    let mut body = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = host.saturating_add(1);
        } else if name.eq_ignore_ascii_case("upgrade") {
            // RFC 6455 §4.2.1: |Upgrade| containing "websocket" (case-insensitive).
            upgrade |= has_token(h.value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            // RFC 6455 §4.2.1: |Connection| including the "Upgrade" token.
            connection_upgrade |= has_token(h.value, b"upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            versions = versions.saturating_add(1);
            version = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys = keys.saturating_add(1);
            key = Some(h.value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            body |= h.value.trim_ascii() != b"0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            body = true;
        }
    }

    // RFC 6455 §4.2.1 item 2: a |Host| header field.
    if host != 1 {
        return Err(HandshakeError::MissingHost);
    }
    if !upgrade {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection_upgrade {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if body {
        return Err(HandshakeError::UnexpectedBody);
    }
    // RFC 6455 §4.2.1 item 6 and §4.4: version 13, else 426 naming it.
    if versions != 1 || version.map(<[u8]>::trim_ascii) != Some(b"13".as_slice()) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // RFC 6455 §4.2.1 item 5: base64 that decodes to 16 bytes.
    let key = match (keys, key) {
        (1, Some(k)) => k.trim_ascii(),
        _ => return Err(HandshakeError::BadKey),
    };
    if key.len() != 24 || BASE64.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::BadKey);
    }
    let key = std::str::from_utf8(key)
        .map_err(|_| HandshakeError::BadKey)?
        .to_owned();
    // RFC 6455 §4.2.2 / §10.2: the server may refuse origins it does not know.
    let origin = match origin {
        Some(o) => Some(
            std::str::from_utf8(o.trim_ascii())
                .map_err(|_| HandshakeError::ForbiddenOrigin)?
                .to_owned(),
        ),
        None => None,
    };
    if !cfg.allowed_origins.is_empty() {
        let allowed = origin.as_deref().is_some_and(|o| {
            cfg.allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o))
        });
        if !allowed {
            return Err(HandshakeError::ForbiddenOrigin);
        }
    }
    Ok(HandshakeRequest { path, key, origin })
}

/// Does a comma-separated header value contain `token` (ASCII case-insensitive)?
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// RFC 6455 §4.2.2 item 5.4: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The `101 Switching Protocols` response (RFC 6455 §4.2.2 item 5): no
/// subprotocol, no extension.
pub fn response_101(req: &HandshakeRequest) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&req.key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn cfg() -> HandshakeConfig {
        HandshakeConfig {
            max_header_bytes: 8192,
            allowed_origins: Vec::new(),
        }
    }

    fn request(extra: &str) -> String {
        format!(
            "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn parse(raw: &str) -> Result<Option<(usize, HandshakeRequest)>, HandshakeError> {
        parse_request(raw.as_bytes(), &cfg())
    }

    fn status_line(resp: &[u8]) -> String {
        let text = String::from_utf8(resp.to_vec()).unwrap();
        text.lines().next().unwrap().to_owned()
    }

    #[test]
    fn computes_rfc_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_valid_request_and_answers_101() {
        let raw = request("Origin: http://example.com\r\n");
        let (n, req) = parse(&raw).unwrap().unwrap();
        assert_eq!(n, raw.len());
        assert_eq!(req.path, "/chat?room=1");
        assert_eq!(req.key, KEY);
        assert_eq!(req.origin.as_deref(), Some("http://example.com"));
        let resp = String::from_utf8(response_101(&req)).unwrap();
        assert_eq!(
            resp,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn parses_request_arriving_byte_by_byte() {
        let mut raw = request("").into_bytes();
        let full = raw.len();
        raw.extend_from_slice(&[0x81, 0x80]); // frame bytes right behind the head
        for cut in 0..full {
            assert_eq!(parse_request(&raw[..cut], &cfg()), Ok(None), "cut {cut}");
        }
        for cut in full..=raw.len() {
            let (n, _) = parse_request(&raw[..cut], &cfg()).unwrap().unwrap();
            assert_eq!(n, full);
        }
    }

    #[test]
    fn accepts_token_lists_and_any_case() {
        let raw = format!(
            "GET / HTTP/1.1\r\nhost: a\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-key:  {KEY} \r\nsec-websocket-version: 13\r\n\r\n"
        );
        assert!(parse(&raw).unwrap().is_some());
    }

    #[test]
    fn answers_431_for_oversized_head() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        raw.resize(9000, b'a');
        let err = parse_request(&raw, &cfg()).unwrap_err();
        assert_eq!(err, HandshakeError::HeaderTooLarge);
        assert_eq!(err.status(), 431);
        assert_eq!(
            status_line(&err.response()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // Just under the limit it is still only incomplete.
        assert_eq!(parse_request(&raw[..8191], &cfg()), Ok(None));
        // A complete head larger than the limit is refused too.
        let big = request(&format!("X-Pad: {}\r\n", "b".repeat(9000)));
        assert_eq!(parse(&big), Err(HandshakeError::HeaderTooLarge));
        let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(parse(&request(&many)), Err(HandshakeError::HeaderTooLarge));
    }

    #[test]
    fn answers_426_for_other_versions() {
        let raw = request("").replace("Version: 13", "Version: 8");
        let err = parse(&raw).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion);
        let resp = String::from_utf8(err.response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(resp.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(resp.contains("\r\nConnection: close\r\n"));
        let missing = request("").replace("Sec-WebSocket-Version: 13\r\n", "");
        assert_eq!(parse(&missing), Err(HandshakeError::UnsupportedVersion));
    }

    #[test]
    fn answers_400_for_bad_requests() {
        let cases = [
            (
                request("").replace("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHost,
            ),
            (request("Host: again\r\n"), HandshakeError::MissingHost),
            (
                request("").replace("Upgrade: websocket\r\n", ""),
                HandshakeError::MissingUpgrade,
            ),
            (
                request("").replace("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::MissingUpgrade,
            ),
            (
                request("").replace("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (request("").replace(KEY, "c2hvcnQ="), HandshakeError::BadKey),
            (
                request("").replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!=="),
                HandshakeError::BadKey,
            ),
            (
                request("").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                HandshakeError::BadKey,
            ),
            (
                request(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
                HandshakeError::BadKey,
            ),
            (
                request("").replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::HttpVersion,
            ),
            (
                request("Content-Length: 5\r\n"),
                HandshakeError::UnexpectedBody,
            ),
            (
                "GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
                HandshakeError::Malformed,
            ),
        ];
        for (raw, want) in cases {
            let err = parse(&raw).unwrap_err();
            assert_eq!(err, want, "{raw:?}");
            assert_eq!(err.status(), 400);
            let resp = String::from_utf8(err.response()).unwrap();
            assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"));
            assert!(resp.contains("\r\nConnection: close\r\n"));
            let (head, body) = resp.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
        }
        assert!(parse(&request("Content-Length: 0\r\n")).unwrap().is_some());
    }

    #[test]
    fn answers_403_for_unlisted_origin() {
        let cfg = HandshakeConfig {
            max_header_bytes: 8192,
            allowed_origins: vec!["https://chat.example".to_owned()],
        };
        let ok = request("Origin: https://CHAT.example\r\n");
        assert!(parse_request(ok.as_bytes(), &cfg).unwrap().is_some());
        for raw in [request("Origin: https://evil.example\r\n"), request("")] {
            let err = parse_request(raw.as_bytes(), &cfg).unwrap_err();
            assert_eq!(err, HandshakeError::ForbiddenOrigin);
            assert_eq!(status_line(&err.response()), "HTTP/1.1 403 Forbidden");
        }
    }

    #[test]
    fn answers_405_for_other_methods() {
        let raw = request("").replacen("GET", "POST", 1);
        let err = parse(&raw).unwrap_err();
        assert_eq!(err, HandshakeError::MethodNotAllowed);
        let resp = String::from_utf8(err.response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(resp.contains("\r\nAllow: GET\r\n"));
    }
}
