//! HTTP/1.1 request head parsing (RFC 9112) on top of `httparse`, with limits.
//!
//! Owns: the request line and header fields, the limits on them, the
//! keep-alive and WebSocket-upgrade decisions, and skipping a
//! `Content-Length` body. Must not know about sockets, buffers that outlive a
//! call, the clock, static files or the WebSocket handshake itself (an upgrade
//! request is only flagged; the loop hands the same bytes to the handshake
//! parser).
//!
//! How it works: [`parse`] is called with everything received so far. It
//! consumes nothing until one whole request (head plus any declared body) is
//! present, then reports how many bytes it used, so pipelined requests are
//! handled by calling it again on the rest. `httparse` never sees more than
//! `max_header_bytes`, so re-parsing after a partial head costs at most that
//! much per call however much a client sends.

use std::fmt;

/// Limits applied by [`parse`]; every one of them is a byte or item count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Request line plus header fields plus the blank line. Over it: 431.
    pub max_header_bytes: usize,
    /// Length of the request-target. Over it: 414.
    pub max_uri_bytes: usize,
    /// Number of header fields. Over it: 431.
    pub max_headers: usize,
    /// Largest `Content-Length` accepted (the body is skipped). Over it: 413.
    pub max_body_bytes: usize,
}

/// 8 KiB of head, 2 KiB of target, 64 fields (the same as `Config`'s
/// defaults for the first two), and up to 4 KiB of body so that a small POST
/// still reaches the 405 answer instead of 413.
impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_header_bytes: 8 * 1024,
            max_uri_bytes: 2 * 1024,
            max_headers: 64,
            max_body_bytes: 4 * 1024,
        }
    }
}

/// The request method. RFC 9110 §9.1: method names are case-sensitive, so
/// `get` is `Other("get")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other(String),
}

impl Method {
    /// The method as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(m) => m,
        }
    }
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request-target exactly as sent (not decoded; see `path::normalize`).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the connection may carry another request after the response
    /// (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Upgrade: websocket` together with a `Connection: upgrade` token.
    pub websocket_upgrade: bool,
    /// All `If-None-Match` field lines joined with `", "`, if any.
    pub if_none_match: Option<String>,
}

impl Request {
    /// GET or HEAD: the only methods the static file server answers.
    pub fn is_get_or_head(&self) -> bool {
        matches!(self.method, Method::Get | Method::Head)
    }

    /// The request-target without its query or fragment, still
    /// percent-encoded: what the loop matches its own routes against
    /// (`/ws`, `/healthz`, `/stats`). Files go through `path::normalize`.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or_default()
    }
}

/// Why a request was refused. Every error ends the connection: after one the
/// message framing can no longer be trusted, so the loop answers with
/// `response::error(err.status())`, `keep_alive = false`, and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Malformed request line or header, bad or conflicting `Content-Length`,
    /// `Transfer-Encoding` together with `Content-Length`, missing or repeated
    /// `Host` in HTTP/1.1. → 400
    BadRequest(&'static str),
    /// Header block longer than `max_header_bytes`, or more than `max_headers`
    /// fields. → 431
    HeadersTooLarge,
    /// Request-target longer than `max_uri_bytes`. → 414
    UriTooLong,
    /// An `HTTP/x.y` version other than 1.0 and 1.1. → 505
    VersionNotSupported,
    /// `Content-Length` over `max_body_bytes`, or a `Transfer-Encoding` body
    /// (its size cannot be bounded before reading it). → 413
    PayloadTooLarge,
}

impl RequestError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeadersTooLarge => 431,
            RequestError::UriTooLong => 414,
            RequestError::VersionNotSupported => 505,
            RequestError::PayloadTooLarge => 413,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadRequest(why) => write!(f, "bad request: {why}"),
            RequestError::HeadersTooLarge => f.write_str("request header fields too large"),
            RequestError::UriTooLong => f.write_str("request-target too long"),
            RequestError::VersionNotSupported => f.write_str("HTTP version not supported"),
            RequestError::PayloadTooLarge => f.write_str("request body too large"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Header arrays up to this size live on the stack.
const STACK_HEADERS: usize = 32;

/// Tries to parse one request from the start of `buf`.
///
/// `Ok(None)`: more bytes are needed; nothing was consumed. `Ok(Some((n,
/// req)))`: the request, including any `Content-Length` body (skipped, never
/// returned), used the first `n` bytes; anything after them is the next
/// pipelined request. `Err`: the request is refused, see [`RequestError`] for
/// which limit gives which status. Errors can be reported before the head is
/// complete (a request line already over `max_uri_bytes`, an incomplete head
/// already over `max_header_bytes`, a malformed byte).
pub fn parse(buf: &[u8], limits: &RequestLimits) -> Result<Option<(usize, Request)>, RequestError> {
    // RFC 9112 §3: a long request-target gets 414 even while the request line
    // is still arriving.
    if target_over_limit(buf, limits.max_uri_bytes) {
        return Err(RequestError::UriTooLong);
    }

    // Never give httparse more than the header limit: the cost of re-parsing
    // after a partial head stays bounded, and a head that is still incomplete
    // within the limit is too large.
    let capped = buf.get(..limits.max_header_bytes).unwrap_or(buf);

    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        stack.get_mut(..limits.max_headers).unwrap_or_default()
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(headers);

    let head_len = match req.parse(capped) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_header_bytes {
                Err(RequestError::HeadersTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadersTooLarge),
        Err(httparse::Error::Version) => {
            return Err(if claims_http_version(buf) {
                RequestError::VersionNotSupported
            } else {
                RequestError::BadRequest("malformed request line")
            });
        }
        Err(httparse::Error::Token) => {
            return Err(RequestError::BadRequest("malformed request line"));
        }
        Err(_) => return Err(RequestError::BadRequest("malformed header field")),
    };

    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(RequestError::BadRequest("incomplete request line"));
    };
    if target.len() > limits.max_uri_bytes {
        return Err(RequestError::UriTooLong);
    }

    let fields = Fields::read(req.headers, minor_version)?;
    let body_len = fields.body_len(limits)?;
    // RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` waits for a
    // go-ahead before the body. Nothing here ever needs a body, so instead of
    // making it wait, answer at once and close (the body is then discarded).
    let answer_before_body = body_len > 0 && fields.expect_continue;
    let total = if answer_before_body {
        head_len
    } else {
        head_len
            .checked_add(body_len)
            .ok_or(RequestError::PayloadTooLarge)?
    };
    if buf.len() < total {
        return Ok(None);
    }

    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let request = Request {
        method,
        target: target.to_owned(),
        minor_version,
        keep_alive: fields.keep_alive(minor_version) && !answer_before_body,
        websocket_upgrade: fields.upgrade_websocket && fields.connection_upgrade,
        if_none_match: fields.if_none_match,
    };
    Ok(Some((total, request)))
}

/// What [`parse`] keeps from the header fields.
#[derive(Debug, Default)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    connection_upgrade: bool,
    upgrade_websocket: bool,
    expect_continue: bool,
    if_none_match: Option<String>,
}

impl Fields {
    fn read(headers: &[httparse::Header<'_>], minor_version: u8) -> Result<Fields, RequestError> {
        let mut fields = Fields::default();
        let mut hosts = 0usize;
        for header in headers {
            let name = header.name;
            let value = header.value;
            if name.eq_ignore_ascii_case("content-length") {
                fields.add_content_length(value)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                fields.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in list_items(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        fields.connection_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        fields.connection_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        fields.connection_upgrade = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                // RFC 9110 §7.8: a list of protocol[/version]; RFC 6455 §4.1
                // names the protocol "websocket".
                if list_items(value).any(|p| p.eq_ignore_ascii_case(b"websocket")) {
                    fields.upgrade_websocket = true;
                }
            } else if name.eq_ignore_ascii_case("expect") {
                if list_items(value).any(|e| e.eq_ignore_ascii_case(b"100-continue")) {
                    fields.expect_continue = true;
                }
            } else if name.eq_ignore_ascii_case("host") {
                hosts = hosts.saturating_add(1);
            } else if name.eq_ignore_ascii_case("if-none-match") {
                let value = String::from_utf8_lossy(value);
                let value = value.trim();
                match &mut fields.if_none_match {
                    // RFC 9110 §5.3: repeated list fields combine with commas.
                    Some(all) => {
                        all.push_str(", ");
                        all.push_str(value);
                    }
                    None => fields.if_none_match = Some(value.to_owned()),
                }
            }
        }
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request
        // without a Host field or with more than one.
        if minor_version >= 1 && hosts != 1 {
            return Err(RequestError::BadRequest(
                "HTTP/1.1 needs exactly one Host field",
            ));
        }
        Ok(fields)
    }

    /// RFC 9110 §8.6 / RFC 9112 §6.3: `Content-Length` is 1*DIGIT; a list of
    /// identical values (from one field or repeated fields) may be taken as
    /// one; anything else is unrecoverable framing and gets 400.
    fn add_content_length(&mut self, value: &[u8]) -> Result<(), RequestError> {
        const BAD: RequestError = RequestError::BadRequest("invalid Content-Length");
        let mut any = false;
        for item in value.split(|&b| b == b',') {
            let item = trim_ows(item);
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return Err(BAD);
            }
            let n = item.iter().try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            });
            let Some(n) = n else {
                // More digits than a u64 holds: certainly over any limit.
                return Err(RequestError::PayloadTooLarge);
            };
            match self.content_length {
                Some(prev) if prev != n => {
                    return Err(RequestError::BadRequest("conflicting Content-Length"));
                }
                _ => self.content_length = Some(n),
            }
            any = true;
        }
        if any { Ok(()) } else { Err(BAD) }
    }

    /// How many body bytes follow the head.
    fn body_len(&self, limits: &RequestLimits) -> Result<usize, RequestError> {
        if self.transfer_encoding {
            // RFC 9112 §6.3: both present is a smuggling attempt or a broken
            // intermediary: 400, then close.
            if self.content_length.is_some() {
                return Err(RequestError::BadRequest(
                    "Transfer-Encoding with Content-Length",
                ));
            }
            // A chunked body's size is unknown until it has all arrived, and
            // this server accepts no request bodies it cannot bound: 413.
            return Err(RequestError::PayloadTooLarge);
        }
        match self.content_length {
            None => Ok(0),
            Some(n) => match usize::try_from(n) {
                Ok(n) if n <= limits.max_body_bytes => Ok(n),
                _ => Err(RequestError::PayloadTooLarge),
            },
        }
    }

    /// RFC 9112 §9.3: HTTP/1.1 is persistent unless `close` is sent; HTTP/1.0
    /// only with `keep-alive`.
    fn keep_alive(&self, minor_version: u8) -> bool {
        if self.connection_close {
            false
        } else if minor_version >= 1 {
            true
        } else {
            self.connection_keep_alive
        }
    }
}

/// The non-empty items of a comma-separated field value, optional
/// whitespace trimmed (RFC 9110 §5.6.1).
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The request line with leading empty lines skipped (RFC 9112 §2.2, as
/// httparse does), cut at the first line break.
fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

/// Whether the request-target seen so far (complete or not) is longer than
/// `max`. Scans at most a method token plus `max + 1` bytes.
fn target_over_limit(buf: &[u8], max: usize) -> bool {
    /// Longer method tokens are left to httparse and the header limit.
    const MAX_METHOD_SCAN: usize = 64;
    let start = buf
        .iter()
        .take(MAX_METHOD_SCAN)
        .position(|&b| b != b'\r' && b != b'\n');
    let Some(rest) = start.and_then(|s| buf.get(s..)) else {
        return false;
    };
    let Some(sp) = rest.iter().take(MAX_METHOD_SCAN).position(|&b| b == b' ') else {
        return false;
    };
    let target = rest.get(sp.saturating_add(1)..).unwrap_or_default();
    let len = target
        .iter()
        .take(max.saturating_add(1))
        .take_while(|&&b| b != b' ' && b != b'\r' && b != b'\n')
        .count();
    len > max
}

/// Whether the request line's third token starts like `HTTP/<digit>`, so a
/// version error from httparse is an unsupported version (505) rather than
/// garbage (400).
fn claims_http_version(buf: &[u8]) -> bool {
    let mut parts = request_line(buf).splitn(3, |&b| b == b' ');
    let version = parts.nth(2).unwrap_or_default();
    matches!(version, [b'H', b'T', b'T', b'P', b'/', d, ..] if d.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_header_bytes: 1024,
            max_uri_bytes: 64,
            max_headers: 8,
            max_body_bytes: 16,
        }
    }

    fn parse_ok(buf: &[u8]) -> (usize, Request) {
        match parse(buf, &limits()) {
            Ok(Some(done)) => done,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn parse_err(buf: &[u8]) -> RequestError {
        match parse(buf, &limits()) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const SIMPLE: &[u8] =
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

    #[test]
    fn parses_complete_request() {
        let (n, req) = parse_ok(SIMPLE);
        assert_eq!(n, SIMPLE.len());
        assert_eq!(req.path(), "/index.html");
        assert_eq!(
            req,
            Request {
                method: Method::Get,
                target: "/index.html?x=1".into(),
                minor_version: 1,
                keep_alive: true,
                websocket_upgrade: false,
                if_none_match: None,
            }
        );
    }

    #[test]
    fn parses_head_and_other_methods() {
        let (_, req) = parse_ok(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.method, Method::Head);
        let (_, req) = parse_ok(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.method, Method::Other("POST".into()));
        assert!(!req.is_get_or_head());
        // RFC 9110 §9.1: case-sensitive.
        let (_, req) = parse_ok(b"get / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.method, Method::Other("get".into()));
    }

    #[test]
    fn waits_byte_by_byte_until_complete() {
        for end in 0..SIMPLE.len() {
            assert_eq!(parse(&SIMPLE[..end], &limits()), Ok(None), "prefix {end}");
        }
        assert_eq!(parse_ok(SIMPLE).0, SIMPLE.len());
    }

    #[test]
    fn parses_two_pipelined_requests() {
        let mut buf = SIMPLE.to_vec();
        buf.extend_from_slice(b"HEAD /a.css HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET");
        let (n, first) = parse_ok(&buf);
        assert_eq!(first.target, "/index.html?x=1");
        let (m, second) = parse_ok(&buf[n..]);
        assert_eq!(second.method, Method::Head);
        assert_eq!(second.target, "/a.css");
        assert!(!second.keep_alive);
        assert_eq!(parse(&buf[n + m..], &limits()), Ok(None));
    }

    #[test]
    fn keep_alive_rules_for_http_1_0_and_1_1() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
        ];
        for (raw, keep) in cases {
            let (_, req) = parse_ok(raw);
            assert_eq!(req.keep_alive, *keep, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(parse_ok(b"GET / HTTP/1.0\r\n\r\n").1.minor_version, 0);
    }

    #[test]
    fn detects_websocket_upgrade_in_comma_lists() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true),
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n", true),
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n", true),
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", false),
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n", false),
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgraded\r\nUpgrade: websocket\r\n\r\n", false),
            (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false),
        ];
        for (raw, upgrade) in cases {
            let (_, req) = parse_ok(raw);
            assert_eq!(
                req.websocket_upgrade,
                *upgrade,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn collects_if_none_match() {
        let (_, req) = parse_ok(
            b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"a\"\r\nif-none-match:  W/\"b\" \r\n\r\n",
        );
        assert_eq!(req.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
    }

    #[test]
    fn expect_100_continue_is_answered_before_the_body_then_closed() {
        let head =
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n";
        let (n, req) = parse_ok(head);
        assert_eq!(n, head.len(), "the body is not waited for");
        assert!(!req.keep_alive, "the connection closes after the answer");
        // Without a body there is nothing to wait for: keep-alive stays.
        let empty = b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n";
        assert!(parse_ok(empty).1.keep_alive);
        // Other expectations change nothing: the body is still read first.
        let other = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: x\r\n\r\n";
        assert_eq!(parse(other, &limits()), Ok(None));
    }

    #[test]
    fn skips_content_length_body() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
        let head = buf.len() - 8;
        for end in head..head + 5 {
            assert_eq!(parse(&buf[..end], &limits()), Ok(None), "prefix {end}");
        }
        let (n, _) = parse_ok(buf);
        assert_eq!(&buf[n..], b"GET");
        // Identical repeated values are one value (RFC 9110 §8.6).
        let buf =
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nab";
        assert_eq!(parse_ok(buf).0, buf.len());
    }

    #[test]
    fn rejects_bad_content_length_with_400() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,\r\n\r\n",
        ] {
            let err = parse_err(raw);
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn rejects_large_body_with_413() {
        let err = parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n");
        assert_eq!(err, RequestError::PayloadTooLarge);
        assert_eq!(err.status(), 413);
        let err = parse_err(
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        );
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn rejects_transfer_encoding() {
        let err =
            parse_err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!(err.status(), 413);
        let err = parse_err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn rejects_long_uri_with_414_even_before_the_line_ends() {
        let target = "a".repeat(64);
        let ok = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", &target[1..]);
        assert_eq!(parse_ok(ok.as_bytes()).1.target.len(), 64);
        let long = format!("GET /{target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(parse_err(long.as_bytes()), RequestError::UriTooLong);
        assert_eq!(RequestError::UriTooLong.status(), 414);
        // The request line is still arriving.
        let partial = format!("GET /{target}");
        assert_eq!(parse_err(partial.as_bytes()), RequestError::UriTooLong);
        assert_eq!(parse(&partial.as_bytes()[..60], &limits()), Ok(None));
    }

    #[test]
    fn rejects_long_header_block_with_431() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        buf.resize(1023, b'x');
        assert_eq!(parse(&buf, &limits()), Ok(None));
        buf.push(b'x');
        assert_eq!(parse_err(&buf), RequestError::HeadersTooLarge);
        // Also when the block is complete but over the limit.
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_err(&buf), RequestError::HeadersTooLarge);
        assert_eq!(RequestError::HeadersTooLarge.status(), 431);
    }

    #[test]
    fn rejects_too_many_headers_with_431() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..7 {
            buf.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert!(parse(&buf, &limits()).is_ok());
        buf.splice(16..16, b"X-8: y\r\n".iter().copied());
        assert_eq!(parse_err(&buf), RequestError::HeadersTooLarge);
    }

    #[test]
    fn uses_the_heap_for_many_headers() {
        let limits = RequestLimits {
            max_headers: 100,
            ..limits()
        };
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..40 {
            buf.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&buf, &limits), Ok(Some(_))));
    }

    #[test]
    fn rejects_other_versions_with_505() {
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/3",
        ] {
            let err = parse_err(raw);
            assert_eq!(
                err,
                RequestError::VersionNotSupported,
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(err.status(), 505);
        }
    }

    #[test]
    fn rejects_malformed_requests_with_400() {
        for raw in [
            &b"GET / FTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let err = parse_err(raw);
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn tolerates_leading_empty_lines() {
        let (n, req) = parse_ok(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(n, 29);
        assert_eq!(req.target, "/");
    }

    #[test]
    fn display_names_the_problem() {
        assert_eq!(
            RequestError::BadRequest("invalid Content-Length").to_string(),
            "bad request: invalid Content-Length"
        );
        assert_eq!(
            RequestError::UriTooLong.to_string(),
            "request-target too long"
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn request_strategy() -> impl Strategy<Value = Vec<u8>> {
            (
                prop::sample::select(vec!["GET", "HEAD", "POST"]),
                "/[a-z0-9./%?=]{0,20}",
                prop::sample::select(vec!["1.0", "1.1"]),
                prop::option::of(prop::sample::select(vec!["close", "keep-alive", "Upgrade"])),
                0usize..=16,
            )
                .prop_map(|(method, target, version, conn, body)| {
                    let mut s = format!("{method} {target} HTTP/{version}\r\nHost: h\r\n");
                    if let Some(c) = conn {
                        s.push_str(&format!("Connection: {c}\r\n"));
                    }
                    if body > 0 {
                        s.push_str(&format!("Content-Length: {body}\r\n"));
                    }
                    s.push_str("\r\n");
                    s.push_str(&"b".repeat(body));
                    s.into_bytes()
                })
        }

        fn parse_all(chunks: &[&[u8]]) -> Vec<Request> {
            let mut pending = Vec::new();
            let mut out = Vec::new();
            for chunk in chunks {
                pending.extend_from_slice(chunk);
                while let Ok(Some((n, req))) = parse(&pending, &limits()) {
                    pending.drain(..n);
                    out.push(req);
                }
            }
            assert!(pending.is_empty());
            out
        }

        proptest! {
            #[test]
            fn parse_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse(&buf, &limits());
                let _ = parse(&buf, &RequestLimits { max_headers: 0, max_header_bytes: 3, max_uri_bytes: 0, max_body_bytes: 0 });
            }

            #[test]
            fn parse_never_panics_on_near_valid_input(
                mut buf in request_strategy(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let i = at.index(buf.len());
                buf[i] = byte;
                let _ = parse(&buf, &limits());
            }

            #[test]
            fn any_split_of_a_pipelined_stream_gives_the_same_requests(
                reqs in prop::collection::vec(request_strategy(), 1..5),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let stream: Vec<u8> = reqs.concat();
                let whole = parse_all(&[&stream]);
                prop_assert_eq!(whole.len(), reqs.len());
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                cuts.sort_unstable();
                let mut chunks = Vec::new();
                let mut prev = 0;
                for c in cuts {
                    chunks.push(&stream[prev..c]);
                    prev = c;
                }
                chunks.push(&stream[prev..]);
                prop_assert_eq!(parse_all(&chunks), whole);
            }
        }
    }
}
