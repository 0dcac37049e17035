//! Close status codes (RFC 6455 §7.4) and the close frame body (§5.5.1).
//!
//! Owns which codes a peer may send and how a close payload is parsed and
//! built. Knows nothing about sockets or session state.

use std::fmt;

/// A close status code as carried in the first two bytes of a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// RFC 6455 §7.4.1: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// Endpoint going away (server shutdown, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// Protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// Data type the endpoint cannot accept (binary on the chat endpoint).
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// Message data inconsistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// Policy violation (generic).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// Message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// Unexpected condition on the server.
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// RFC 6455 §7.4.1/§7.4.2: may a peer put `code` on the wire?
    ///
    /// Invalid: 0-999 (unused), 1004 (reserved), 1005/1006 (never sent, they
    /// only describe a missing code or an abnormal drop), 1015 (TLS failure,
    /// never sent), 1016-2999 (reserved for future protocol use), >= 5000.
    /// Valid: 1000-1003, 1007-1014 (including the IANA-registered 1012-1014),
    /// 3000-3999 (registered), 4000-4999 (private use).
    pub const fn is_valid_received(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Free-function form of [`CloseCode::is_valid_received`].
pub const fn is_valid_received(code: u16) -> bool {
    CloseCode::is_valid_received(code)
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

/// Why a received close payload is refused; each maps to the code we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// RFC 6455 §5.5.1: a body, if present, starts with a 2-byte code; 1 byte is malformed → 1002.
    OneByteBody,
    /// RFC 6455 §7.4: code not allowed on the wire → 1002.
    InvalidCode(u16),
    /// RFC 6455 §5.5.1: the reason must be UTF-8 → 1007.
    InvalidReason,
}

impl CloseError {
    /// The close code to fail the connection with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            CloseError::OneByteBody | CloseError::InvalidCode(_) => CloseCode::PROTOCOL_ERROR,
            CloseError::InvalidReason => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::OneByteBody => f.write_str("close frame body of 1 byte"),
            CloseError::InvalidCode(c) => write!(f, "close code {c} may not be sent"),
            CloseError::InvalidReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// Parses an (unmasked) close payload. `Ok(None)`: empty body, no code given.
/// `Ok(Some((code, reason)))` otherwise.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, CloseError> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseError::OneByteBody),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::is_valid_received(code) {
                return Err(CloseError::InvalidCode(code));
            }
            // RFC 6455 §5.5.1: the reason is UTF-8 (whole, so no streaming check needed).
            std::str::from_utf8(reason)
                .map(|r| Some((code, r)))
                .map_err(|_| CloseError::InvalidReason)
        }
    }
}

/// Largest close reason in bytes: a control payload is at most 125 bytes,
/// two of which are the code (RFC 6455 §5.5).
pub const MAX_REASON_BYTES: usize = 123;

/// Builds a close body: the code, then `reason` cut to at most
/// [`MAX_REASON_BYTES`] on a character boundary.
pub fn close_payload(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&code.0.to_be_bytes());
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(reason.as_bytes().get(..end).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_range() {
        let invalid_ranges: &[(u16, u16)] = &[
            (0, 999),
            (1004, 1004),
            (1005, 1005),
            (1006, 1006),
            (1015, 1015),
            (1016, 2999),
            (5000, u16::MAX),
        ];
        for &(lo, hi) in invalid_ranges {
            for code in lo..=hi {
                assert!(!is_valid_received(code), "{code} must be invalid");
            }
        }
        for code in (1000..=1003).chain(1007..=1014).chain(3000..=4999) {
            assert!(is_valid_received(code), "{code} must be valid");
        }
    }

    #[test]
    fn parses_bodies() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(parse_close_payload(b"\x03"), Err(CloseError::OneByteBody));
        assert_eq!(parse_close_payload(b"\x03\xe8"), Ok(Some((1000, ""))));
        assert_eq!(parse_close_payload(b"\x0f\xa0bye"), Ok(Some((4000, "bye"))));
        assert_eq!(
            parse_close_payload(b"\x03\xed"),
            Err(CloseError::InvalidCode(1005))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xce\xba\xe1"),
            Err(CloseError::InvalidReason)
        );
        assert_eq!(
            CloseError::InvalidReason.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            CloseError::OneByteBody.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn truncates_reason_on_char_boundary() {
        let mut out = Vec::new();
        let reason = "é".repeat(100); // 200 bytes
        close_payload(CloseCode::NORMAL, &reason, &mut out);
        assert_eq!(out.len(), 2 + 122);
        assert!(std::str::from_utf8(&out[2..]).is_ok());
    }
}
