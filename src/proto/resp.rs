//! RESP, the Redis serialization protocol: a sans-I/O decoder for replies and
//! an encoder for commands, for the link between server nodes and Redis.
//!
//! Owns the wire syntax only: RESP2 (`+ - : $ *`, with `$-1` and `*-1` as
//! null) and the RESP3 types a server sends after `HELLO 3` (`_ # , ( ! = % ~
//! | >`), the limits that keep a hostile or broken peer from making the
//! decoder allocate or loop without bound ([`RespLimits`]), and the shape of
//! pub/sub messages ([`PubSub`]). It knows nothing about sockets, timeouts,
//! which commands exist, or what the chat stores in Redis.
//!
//! How the decoder works: one forward pass from the start of the input with an
//! explicit stack of open aggregates (arrays, maps, sets, pushes, attributes),
//! so no input and no `max_depth` can overflow the call stack. When the bytes
//! run out before a frame ends, nothing is consumed and the decoder remembers
//! how many bytes the next attempt needs at least (the end of a bulk string
//! whose header it has seen, or one more byte for an unfinished line), so a
//! large bulk arriving in small reads is not re-parsed on every read. Payloads
//! are copied out only once their whole length is present, so a declared size
//! never becomes an allocation before the bytes behind it exist; aggregates
//! reserve room for at most as many items as the bytes present could hold.
//!
//! Attributes (`|`) are kept: the frame that follows one is returned wrapped
//! in [`Frame::Attributed`]; consecutive attributes are merged into one
//! (whose pairs `max_elements` still limits).
//! RESP3 streamed strings and aggregates (`$?`, `*?`) are not supported: Redis
//! does not send them.

use std::fmt;

/// One decoded RESP value.
///
/// The RESP2 nulls (`$-1`, `*-1`) and the RESP3 null (`_`) all decode to
/// [`Frame::Null`]; [`encode`] writes it as `_`.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+`: a simple string (no CR or LF inside).
    Simple(Vec<u8>),
    /// `-`: an error line, e.g. `ERR unknown command` or `NOSCRIPT ...`.
    Error(Vec<u8>),
    /// `:`: a signed 64-bit integer.
    Integer(i64),
    /// `$`: a binary-safe bulk string.
    Bulk(Vec<u8>),
    /// `*`: an array (RESP2 and RESP3).
    Array(Vec<Frame>),
    /// `_`, `$-1` or `*-1`.
    Null,
    /// `#t` / `#f` (RESP3).
    Boolean(bool),
    /// `,` (RESP3): a double, including `inf`, `-inf` and `nan`.
    Double(f64),
    /// `(` (RESP3): an integer of any size, as its decimal text (`-?[0-9]+`).
    BigNumber(String),
    /// `!` (RESP3): a binary-safe error.
    BulkError(Vec<u8>),
    /// `=` (RESP3): a string with a three-byte format such as `txt` or `mkd`.
    Verbatim {
        /// The format, e.g. `*b"txt"`.
        format: [u8; 3],
        /// The text after `xxx:`.
        text: Vec<u8>,
    },
    /// `%` (RESP3): key/value pairs in wire order (repeated keys are all kept).
    Map(Vec<(Frame, Frame)>),
    /// `~` (RESP3): a set, in wire order.
    Set(Vec<Frame>),
    /// `>` (RESP3): out-of-band data such as a pub/sub message.
    Push(Vec<Frame>),
    /// `|` (RESP3): attributes, then the frame they describe.
    Attributed {
        /// The attribute map's pairs.
        attrs: Vec<(Frame, Frame)>,
        /// The frame that followed the attributes (never itself `Attributed`).
        frame: Box<Frame>,
    },
}

impl Frame {
    /// The bytes of a simple string, bulk string or verbatim string's text.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) => Some(b),
            Frame::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value of an integer frame.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The message of an error or bulk error frame.
    pub fn error_message(&self) -> Option<&[u8]> {
        match self {
            Frame::Error(b) | Frame::BulkError(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is a null (`_`, `$-1` or `*-1`).
    pub fn is_null(&self) -> bool {
        matches!(self, Frame::Null)
    }

    /// The frame without the attributes in front of it, if any.
    pub fn without_attributes(self) -> Frame {
        match self {
            Frame::Attributed { frame, .. } => *frame,
            other => other,
        }
    }
}

/// The limits a decoder enforces. Each is checked against the declared size
/// in a header before anything of that size is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Aggregates (arrays, maps, sets, pushes, attributes) nested at most this
    /// deep; `0` allows scalars only, `1` allows `*1\r\n:1\r\n` but not `*1\r\n*0\r\n`.
    pub max_depth: usize,
    /// Items one aggregate may declare (pairs for maps and attributes).
    pub max_elements: usize,
    /// Payload bytes of one bulk string, bulk error or verbatim string.
    pub max_bulk_bytes: usize,
    /// Bytes of one line after its type byte, CRLF excluded: simple strings,
    /// errors, numbers and headers.
    pub max_line_bytes: usize,
    /// Bytes of one whole frame; an unfinished frame already longer is refused.
    pub max_frame_bytes: usize,
}

impl Default for RespLimits {
    /// 32 levels, 1 Mi items, 16 MiB bulks, 64 KiB lines (Redis's own inline
    /// limit), 64 MiB frames.
    fn default() -> Self {
        RespLimits {
            max_depth: 32,
            max_elements: 1 << 20,
            max_bulk_bytes: 16 << 20,
            max_line_bytes: 64 << 10,
            max_frame_bytes: 64 << 20,
        }
    }
}

/// Why a byte stream is not RESP (or not within the limits). After any of
/// these the stream cannot be resynchronised: the connection must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// A frame started with a byte that is no RESP type.
    UnknownType {
        /// The offending byte.
        byte: u8,
    },
    /// A line ended with a bare `\n` or a `\r` not followed by `\n`, or a
    /// bulk payload was not followed by `\r\n`.
    BadLineEnd,
    /// A length that is not a decimal number, or negative where no null is
    /// allowed (only `$-1` and `*-1` are).
    BadLength,
    /// An integer that is not `-?[0-9]+` within 64 bits.
    BadInteger,
    /// A double that is neither a decimal number nor `inf`, `-inf`, `nan`.
    BadDouble,
    /// A boolean other than `#t` or `#f`.
    BadBoolean,
    /// A big number that is not `-?[0-9]+`.
    BadBigNumber,
    /// A null `_` with something before its CRLF.
    BadNull,
    /// A verbatim string shorter than 4 bytes or without `:` after its format.
    BadVerbatim,
    /// A line longer than `max_line_bytes`.
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// Aggregates nested deeper than `max_depth`.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A bulk payload declared longer than `max_bulk_bytes`.
    BulkTooBig {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An aggregate declaring more than `max_elements` items.
    TooManyElements {
        /// The declared count.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// A frame longer than `max_frame_bytes`.
    FrameTooBig {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType { byte } => write!(f, "unknown RESP type byte 0x{byte:02x}"),
            RespError::BadLineEnd => f.write_str("line or bulk not terminated by CRLF"),
            RespError::BadLength => f.write_str("invalid length"),
            RespError::BadInteger => f.write_str("invalid integer"),
            RespError::BadDouble => f.write_str("invalid double"),
            RespError::BadBoolean => f.write_str("invalid boolean"),
            RespError::BadBigNumber => f.write_str("invalid big number"),
            RespError::BadNull => f.write_str("invalid null"),
            RespError::BadVerbatim => f.write_str("invalid verbatim string"),
            RespError::LineTooLong { max } => write!(f, "line longer than {max} bytes"),
            RespError::TooDeep { max } => write!(f, "aggregates nested deeper than {max}"),
            RespError::BulkTooBig { len, max } => {
                write!(f, "bulk of {len} bytes over the limit of {max}")
            }
            RespError::TooManyElements { count, max } => {
                write!(f, "aggregate of {count} items over the limit of {max}")
            }
            RespError::FrameTooBig { max } => write!(f, "frame longer than {max} bytes"),
        }
    }
}

impl std::error::Error for RespError {}

/// Incremental RESP decoder: call [`RespDecoder::decode`] with the pending
/// input each time bytes arrive.
#[derive(Debug, Clone)]
pub struct RespDecoder {
    limits: RespLimits,
    /// The input length below which the unfinished frame cannot progress.
    need: usize,
}

impl RespDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: RespLimits) -> Self {
        RespDecoder { limits, need: 0 }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &RespLimits {
        &self.limits
    }

    /// Tries to decode one frame from the start of `input`.
    ///
    /// `input` must begin where the previous call's consumed bytes ended (the
    /// caller keeps the unconsumed rest and appends new bytes to it; see
    /// [`RespDecoder::reset`] otherwise).
    /// `Ok(None)`: more bytes are needed, nothing consumed.
    /// `Ok(Some((n, frame)))`: `frame` used the first `n` bytes (`n >= 3`).
    /// `Err`: the input is not RESP or breaks a limit of [`RespLimits`]; the
    /// same error results however the input was split across calls.
    pub fn decode(&mut self, input: &[u8]) -> Result<Option<(usize, Frame)>, RespError> {
        let max_frame = self.limits.max_frame_bytes;
        if input.len() < self.need && input.len() <= max_frame {
            return Ok(None);
        }
        // Only the first `max_frame_bytes` are looked at, so an error beyond
        // them is reported as `FrameTooBig` whether the bytes came whole or in pieces.
        let view = input.get(..max_frame).unwrap_or(input);
        match parse(view, &self.limits) {
            Ok((n, frame)) => {
                self.need = 0;
                Ok(Some((n, frame)))
            }
            Err(Stop::Need(_)) if input.len() > max_frame => {
                self.need = 0;
                Err(RespError::FrameTooBig { max: max_frame })
            }
            Err(Stop::Need(need)) => {
                self.need = need;
                Ok(None)
            }
            Err(Stop::Bad(e)) => {
                self.need = 0;
                Err(e)
            }
        }
    }

    /// Forgets what the last unfinished frame needed (after the caller
    /// discarded its pending input).
    pub fn reset(&mut self) {
        self.need = 0;
    }
}

/// Why parsing stopped without a frame.
enum Stop {
    /// The input ends too soon: at least this many bytes are needed.
    Need(usize),
    /// The input is invalid.
    Bad(RespError),
}

impl From<RespError> for Stop {
    fn from(e: RespError) -> Self {
        Stop::Bad(e)
    }
}

/// The kinds of aggregate that stay open while their items are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

/// What one type byte and its line (plus payload) gave.
enum Item {
    /// A complete scalar (or a null array).
    Value(Frame),
    /// An aggregate header with its declared item count (pairs for maps).
    Open(Agg, usize),
}

/// An aggregate whose items are still being read.
struct Open {
    agg: Agg,
    /// Items still to come (twice the pairs for maps and attributes); ≥ 1.
    remaining: usize,
    items: Vec<Frame>,
    /// Attributes read at this level, waiting for the frame they describe.
    attrs: Option<Vec<(Frame, Frame)>>,
}

/// A finished value: a frame, or attributes for the next frame at its level.
enum Done {
    Value(Frame),
    Attrs(Vec<(Frame, Frame)>),
}

/// Splits a flat `k1 v1 k2 v2 ...` list into pairs (the count is even by construction).
fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn close(agg: Agg, items: Vec<Frame>) -> Done {
    match agg {
        Agg::Array => Done::Value(Frame::Array(items)),
        Agg::Set => Done::Value(Frame::Set(items)),
        Agg::Push => Done::Value(Frame::Push(items)),
        Agg::Map => Done::Value(Frame::Map(pairs(items))),
        Agg::Attribute => Done::Attrs(pairs(items)),
    }
}

/// Parses one whole frame from the start of `input`.
fn parse(input: &[u8], limits: &RespLimits) -> Result<(usize, Frame), Stop> {
    let mut pos = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    let mut top_attrs: Option<Vec<(Frame, Frame)>> = None;
    loop {
        let mut done = match item(input, &mut pos, limits)? {
            Item::Value(frame) => Done::Value(frame),
            Item::Open(agg, count) => {
                if stack.len() >= limits.max_depth {
                    return Err(RespError::TooDeep {
                        max: limits.max_depth,
                    }
                    .into());
                }
                let per = if matches!(agg, Agg::Map | Agg::Attribute) {
                    2
                } else {
                    1
                };
                let remaining = count.saturating_mul(per);
                if remaining == 0 {
                    close(agg, Vec::new())
                } else {
                    // The smallest frame (`_\r\n`) is 3 bytes: never reserve
                    // room for more items than the bytes present could hold.
                    let present = input.len().saturating_sub(pos) / 3;
                    stack.push(Open {
                        agg,
                        remaining,
                        items: Vec::with_capacity(remaining.min(present)),
                        attrs: None,
                    });
                    continue;
                }
            }
        };
        // Hand the finished value to its parent, closing every parent it completes.
        loop {
            let slot = match stack.last_mut() {
                Some(open) => &mut open.attrs,
                None => &mut top_attrs,
            };
            match done {
                Done::Attrs(attrs) => {
                    match slot {
                        Some(pending) => {
                            // Merged attributes are one map: the item limit covers them all.
                            let count = pending.len().saturating_add(attrs.len());
                            if count > limits.max_elements {
                                return Err(RespError::TooManyElements {
                                    count: count as u64,
                                    max: limits.max_elements,
                                }
                                .into());
                            }
                            pending.extend(attrs);
                        }
                        None => *slot = Some(attrs),
                    }
                    break;
                }
                Done::Value(mut frame) => {
                    if let Some(attrs) = slot.take() {
                        frame = Frame::Attributed {
                            attrs,
                            frame: Box::new(frame),
                        };
                    }
                    let Some(open) = stack.last_mut() else {
                        return Ok((pos, frame));
                    };
                    open.items.push(frame);
                    open.remaining = open.remaining.saturating_sub(1);
                    if open.remaining > 0 {
                        break;
                    }
                    match stack.pop() {
                        Some(open) => done = close(open.agg, open.items),
                        None => break,
                    }
                }
            }
        }
    }
}

/// Reads one type byte and what belongs to it at `*pos`, advancing `*pos` past it.
fn item(input: &[u8], pos: &mut usize, limits: &RespLimits) -> Result<Item, Stop> {
    let Some(&kind) = input.get(*pos) else {
        return Err(Stop::Need(pos.saturating_add(1)));
    };
    if !b"+-:_#,($!=*%~>|".contains(&kind) {
        return Err(RespError::UnknownType { byte: kind }.into());
    }
    let (text, next) = line(input, pos.saturating_add(1), limits.max_line_bytes)?;
    let value = match kind {
        b'+' => Frame::Simple(text.to_vec()),
        b'-' => Frame::Error(text.to_vec()),
        b':' => Frame::Integer(integer(text)?),
        b'_' if text.is_empty() => Frame::Null,
        b'_' => return Err(RespError::BadNull.into()),
        b'#' => match text {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(RespError::BadBoolean.into()),
        },
        b',' => Frame::Double(double(text)?),
        b'(' => Frame::BigNumber(big_number(text)?),
        b'$' | b'!' | b'=' => {
            let Some(len) = length(text)? else {
                if kind == b'$' {
                    *pos = next;
                    return Ok(Item::Value(Frame::Null));
                }
                return Err(RespError::BadLength.into());
            };
            let body = bulk(input, next, len, limits)?;
            let value = match kind {
                b'$' => Frame::Bulk(body.to_vec()),
                b'!' => Frame::BulkError(body.to_vec()),
                _ => verbatim(body)?,
            };
            *pos = next.saturating_add(len).saturating_add(2);
            return Ok(Item::Value(value));
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let agg = match kind {
                b'*' => Agg::Array,
                b'%' => Agg::Map,
                b'~' => Agg::Set,
                b'>' => Agg::Push,
                _ => Agg::Attribute,
            };
            *pos = next;
            return match length(text)? {
                Some(count) if count > limits.max_elements => Err(RespError::TooManyElements {
                    count: count as u64,
                    max: limits.max_elements,
                }
                .into()),
                Some(count) => Ok(Item::Open(agg, count)),
                None if agg == Agg::Array => Ok(Item::Value(Frame::Null)),
                None => Err(RespError::BadLength.into()),
            };
        }
        other => return Err(RespError::UnknownType { byte: other }.into()),
    };
    *pos = next;
    Ok(Item::Value(value))
}

/// The line starting at `start` (without CRLF) and the offset just past its CRLF.
fn line(input: &[u8], start: usize, max: usize) -> Result<(&[u8], usize), Stop> {
    let rest = input.get(start..).unwrap_or_default();
    let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if rest.len() > max {
            return Err(RespError::LineTooLong { max }.into());
        }
        return Err(Stop::Need(input.len().saturating_add(1)));
    };
    if end > max {
        return Err(RespError::LineTooLong { max }.into());
    }
    match (rest.get(end), rest.get(end.saturating_add(1))) {
        (Some(b'\r'), Some(b'\n')) => {}
        (Some(b'\r'), None) => return Err(Stop::Need(input.len().saturating_add(1))),
        _ => return Err(RespError::BadLineEnd.into()),
    }
    let text = rest.get(..end).unwrap_or_default();
    Ok((text, start.saturating_add(end).saturating_add(2)))
}

/// The `len` payload bytes at `start`, once they and their CRLF are all present.
fn bulk<'a>(
    input: &'a [u8],
    start: usize,
    len: usize,
    limits: &RespLimits,
) -> Result<&'a [u8], Stop> {
    if len > limits.max_bulk_bytes {
        return Err(RespError::BulkTooBig {
            len: len as u64,
            max: limits.max_bulk_bytes,
        }
        .into());
    }
    let end = start.saturating_add(len);
    let Some(crlf) = input.get(end..end.saturating_add(2)) else {
        return Err(Stop::Need(end.saturating_add(2)));
    };
    if crlf != b"\r\n" {
        return Err(RespError::BadLineEnd.into());
    }
    Ok(input.get(start..end).unwrap_or_default())
}

/// A length: `Some(n)` for digits, `None` for exactly `-1`.
fn length(text: &[u8]) -> Result<Option<usize>, RespError> {
    if text == b"-1" {
        return Ok(None);
    }
    if text.is_empty() {
        return Err(RespError::BadLength);
    }
    let mut n: usize = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return Err(RespError::BadLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(RespError::BadLength)?;
    }
    Ok(Some(n))
}

/// `-?[0-9]+` as an `i64`.
fn integer(text: &[u8]) -> Result<i64, RespError> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadInteger);
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::BadInteger)
}

/// A RESP3 double: a decimal number with optional fraction and exponent, or
/// `inf`, `-inf`, `nan` (any case, with an optional sign).
fn double(text: &[u8]) -> Result<f64, RespError> {
    let unsigned = text
        .strip_prefix(b"-")
        .or_else(|| text.strip_prefix(b"+"))
        .unwrap_or(text);
    let negative = text.first() == Some(&b'-');
    if unsigned.eq_ignore_ascii_case(b"inf") {
        return Ok(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if unsigned.eq_ignore_ascii_case(b"nan") {
        return Ok(f64::NAN);
    }
    // `str::parse` would also take words such as "infinity": check the characters first.
    if !unsigned
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
        || !text
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(RespError::BadDouble);
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::BadDouble)
}

/// `-?[0-9]+` kept as text.
fn big_number(text: &[u8]) -> Result<String, RespError> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadBigNumber);
    }
    String::from_utf8(text.to_vec()).map_err(|_| RespError::BadBigNumber)
}

/// `xxx:text` split into its format and text.
fn verbatim(body: &[u8]) -> Result<Frame, RespError> {
    match body {
        [a, b, c, b':', text @ ..] => Ok(Frame::Verbatim {
            format: [*a, *b, *c],
            text: text.to_vec(),
        }),
        _ => Err(RespError::BadVerbatim),
    }
}

/// Appends `cmd` as a RESP array of bulk strings, the form Redis expects from
/// clients: `encode_command(&[b"GET", b"k"], out)` writes
/// `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`. Any bytes are allowed in an argument.
pub fn encode_command(cmd: &[&[u8]], out: &mut Vec<u8>) {
    let payload: usize = cmd.iter().map(|a| a.len()).sum();
    out.reserve(payload + 16 * cmd.len() + 16);
    header(b'*', cmd.len(), out);
    for arg in cmd {
        header(b'$', arg.len(), out);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `cmd` as one inline command line, the form typed into a terminal:
/// `encode_inline(&[b"SET", b"k", b"a b"], out)` writes `SET k "a b"\r\n`.
///
/// Arguments made only of printable ASCII other than quotes and `\` are
/// written as they are; the rest (and the empty argument) go in double quotes
/// with `\\`, `\"`, `\n`, `\r`, `\t` and `\xHH` escapes, which Redis
/// unescapes. Redis refuses inline lines over 64 KiB; [`encode_command`]
/// has no such limit.
pub fn encode_inline(cmd: &[&[u8]], out: &mut Vec<u8>) {
    for (i, arg) in cmd.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let plain = !arg.is_empty()
            && arg
                .iter()
                .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
        if plain {
            out.extend_from_slice(arg);
            continue;
        }
        out.push(b'"');
        for &b in arg.iter() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b' '..=b'~' => out.push(b),
                _ => out.extend_from_slice(&[b'\\', b'x', hex_digit(b >> 4), hex_digit(b)]),
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `frame` in RESP3 syntax (RESP2 syntax for the RESP2 types; a null
/// is written as `_`).
///
/// CR and LF inside a simple string or error cannot be represented and are
/// written as spaces (as Redis does for its own error replies). A
/// `BigNumber` is written as it is, so it must hold `-?[0-9]+` to decode.
/// Recurses once per nesting level of `frame`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Simple(s) => line_frame(b'+', s, out),
        Frame::Error(s) => line_frame(b'-', s, out),
        Frame::Integer(n) => {
            out.push(b':');
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Frame::Bulk(b) => bulk_frame(b'$', b, out),
        Frame::BulkError(b) => bulk_frame(b'!', b, out),
        Frame::Verbatim { format, text } => {
            header(b'=', text.len().saturating_add(4), out);
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Null => out.extend_from_slice(b"_\r\n"),
        Frame::Boolean(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Double(d) => {
            out.push(b',');
            if d.is_nan() {
                out.extend_from_slice(b"nan");
            } else if d.is_infinite() {
                out.extend_from_slice(if *d > 0.0 { b"inf" } else { b"-inf" });
            } else {
                // `Debug` is the shortest text that parses back to the same
                // value, with an exponent for very large or small magnitudes.
                out.extend_from_slice(format!("{d:?}").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        Frame::BigNumber(s) => line_frame(b'(', s.as_bytes(), out),
        Frame::Array(items) => aggregate(b'*', items, out),
        Frame::Set(items) => aggregate(b'~', items, out),
        Frame::Push(items) => aggregate(b'>', items, out),
        Frame::Map(pairs) => map_frame(b'%', pairs, out),
        Frame::Attributed { attrs, frame } => {
            map_frame(b'|', attrs, out);
            encode(frame, out);
        }
    }
}

fn header(kind: u8, len: usize, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn line_frame(kind: u8, text: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

fn bulk_frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    header(kind, payload.len(), out);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(kind: u8, items: &[Frame], out: &mut Vec<u8>) {
    header(kind, items.len(), out);
    for item in items {
        encode(item, out);
    }
}

fn map_frame(kind: u8, pairs: &[(Frame, Frame)], out: &mut Vec<u8>) {
    header(kind, pairs.len(), out);
    for (k, v) in pairs {
        encode(k, out);
        encode(v, out);
    }
}

/// The lowercase hex digit for the low four bits of `n`.
fn hex_digit(n: u8) -> u8 {
    b"0123456789abcdef"
        .get(usize::from(n & 0x0f))
        .copied()
        .unwrap_or(b'0')
}

/// Which kind of subscription a pub/sub reply is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// `SUBSCRIBE` / `UNSUBSCRIBE`: exact channel names.
    Channel,
    /// `PSUBSCRIBE` / `PUNSUBSCRIBE`: glob patterns.
    Pattern,
    /// `SSUBSCRIBE` / `SUNSUBSCRIBE`: shard channels (Redis 7).
    Shard,
}

/// A frame a subscribed connection receives: an array in RESP2, a push in RESP3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSub {
    /// `["message", channel, payload]`.
    Message {
        /// The channel it was published to.
        channel: Vec<u8>,
        /// The published bytes.
        payload: Vec<u8>,
    },
    /// `["pmessage", pattern, channel, payload]`.
    PatternMessage {
        /// The subscribed pattern that matched.
        pattern: Vec<u8>,
        /// The channel it was published to.
        channel: Vec<u8>,
        /// The published bytes.
        payload: Vec<u8>,
    },
    /// `["smessage", channel, payload]`.
    ShardMessage {
        /// The shard channel it was published to.
        channel: Vec<u8>,
        /// The published bytes.
        payload: Vec<u8>,
    },
    /// `["subscribe" | "psubscribe" | "ssubscribe", channel, count]`.
    Subscribed {
        /// Which command this confirms.
        kind: SubscriptionKind,
        /// The channel or pattern.
        channel: Vec<u8>,
        /// Subscriptions the connection now holds.
        count: i64,
    },
    /// `["unsubscribe" | "punsubscribe" | "sunsubscribe", channel or null, count]`;
    /// the channel is null when the connection held no subscription.
    Unsubscribed {
        /// Which command this confirms.
        kind: SubscriptionKind,
        /// The channel or pattern, if there was one.
        channel: Option<Vec<u8>>,
        /// Subscriptions the connection still holds.
        count: i64,
    },
    /// `["pong", data]`: the RESP2 answer to `PING` on a subscribed connection.
    Pong {
        /// The `PING` argument, or empty.
        payload: Vec<u8>,
    },
}

/// How the items of a pub/sub frame are laid out.
#[derive(Clone, Copy)]
enum Shape {
    Message,
    PatternMessage,
    ShardMessage,
    Subscribed(SubscriptionKind),
    Unsubscribed(SubscriptionKind),
    Pong,
}

fn is_text(f: &Frame) -> bool {
    matches!(f, Frame::Bulk(_) | Frame::Simple(_))
}

impl Shape {
    fn of(items: &[Frame]) -> Option<Shape> {
        let (first, rest) = items.split_first()?;
        let shape = match first.as_bytes()? {
            b"message" => Shape::Message,
            b"pmessage" => Shape::PatternMessage,
            b"smessage" => Shape::ShardMessage,
            b"subscribe" => Shape::Subscribed(SubscriptionKind::Channel),
            b"psubscribe" => Shape::Subscribed(SubscriptionKind::Pattern),
            b"ssubscribe" => Shape::Subscribed(SubscriptionKind::Shard),
            b"unsubscribe" => Shape::Unsubscribed(SubscriptionKind::Channel),
            b"punsubscribe" => Shape::Unsubscribed(SubscriptionKind::Pattern),
            b"sunsubscribe" => Shape::Unsubscribed(SubscriptionKind::Shard),
            b"pong" => Shape::Pong,
            _ => return None,
        };
        let fits = match (shape, rest) {
            (Shape::Message | Shape::ShardMessage, [a, b]) => is_text(a) && is_text(b),
            (Shape::PatternMessage, [a, b, c]) => is_text(a) && is_text(b) && is_text(c),
            (Shape::Subscribed(_), [a, Frame::Integer(_)]) => is_text(a),
            (Shape::Unsubscribed(_), [a, Frame::Integer(_)]) => is_text(a) || a.is_null(),
            (Shape::Pong, [a]) => is_text(a),
            _ => false,
        };
        fits.then_some(shape)
    }
}

/// The bytes of a text frame (checked by `Shape::of`); empty otherwise.
fn take_text(f: Option<Frame>) -> Vec<u8> {
    match f {
        Some(Frame::Bulk(b) | Frame::Simple(b)) => b,
        _ => Vec::new(),
    }
}

impl PubSub {
    /// Reads a pub/sub message or confirmation out of `frame` (an array or a
    /// push whose first item names the kind, lowercase as Redis sends it).
    /// `Err(frame)`, unchanged, when it has any other shape: an ordinary reply.
    pub fn from_frame(frame: Frame) -> Result<PubSub, Frame> {
        let shape = match &frame {
            Frame::Array(items) | Frame::Push(items) => Shape::of(items),
            _ => None,
        };
        let (Some(shape), Frame::Array(items) | Frame::Push(items)) = (shape, &frame) else {
            return Err(frame);
        };
        let count = items.get(2).and_then(Frame::as_integer).unwrap_or(0);
        let null_channel = items.get(1).is_some_and(Frame::is_null);
        let (Frame::Array(items) | Frame::Push(items)) = frame else {
            return Err(frame);
        };
        let mut it = items.into_iter().skip(1);
        Ok(match shape {
            Shape::Message => PubSub::Message {
                channel: take_text(it.next()),
                payload: take_text(it.next()),
            },
            Shape::ShardMessage => PubSub::ShardMessage {
                channel: take_text(it.next()),
                payload: take_text(it.next()),
            },
            Shape::PatternMessage => PubSub::PatternMessage {
                pattern: take_text(it.next()),
                channel: take_text(it.next()),
                payload: take_text(it.next()),
            },
            Shape::Subscribed(kind) => PubSub::Subscribed {
                kind,
                channel: take_text(it.next()),
                count,
            },
            Shape::Unsubscribed(kind) => PubSub::Unsubscribed {
                kind,
                channel: (!null_channel).then(|| take_text(it.next())),
                count,
            },
            Shape::Pong => PubSub::Pong {
                payload: take_text(it.next()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(s: &[u8]) -> Frame {
        Frame::Bulk(s.to_vec())
    }

    fn simple(s: &[u8]) -> Frame {
        Frame::Simple(s.to_vec())
    }

    fn decode_one(input: &[u8]) -> Result<Option<(usize, Frame)>, RespError> {
        RespDecoder::new(RespLimits::default()).decode(input)
    }

    fn decode_with(limits: RespLimits, input: &[u8]) -> Result<Option<(usize, Frame)>, RespError> {
        RespDecoder::new(limits).decode(input)
    }

    /// Decodes a stream fed in the given pieces, the way a connection does;
    /// returns the frames and the first error, if any.
    fn decode_pieces<'a>(
        limits: RespLimits,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Frame>, Option<RespError>, Vec<u8>) {
        // The pending bytes are returned only when no error stopped the stream.
        let mut dec = RespDecoder::new(limits);
        let mut pending = Vec::new();
        let mut frames = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                match dec.decode(&pending) {
                    Ok(Some((n, frame))) => {
                        assert!(n > 0 && n <= pending.len());
                        frames.push(frame);
                        pending.drain(..n);
                    }
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e), Vec::new()),
                }
            }
        }
        (frames, None, pending)
    }

    // Replies captured byte for byte from redis-server 7.0.15, with the
    // command that produced each. `tests/resp.rs` checks the same against a
    // live server.
    const FIXTURES: &[(&str, &[u8])] = &[
        ("PING", b"+PONG\r\n"),
        ("SET k v", b"+OK\r\n"),
        ("GET k", b"$1\r\nv\r\n"),
        ("GET missing (RESP2)", b"$-1\r\n"),
        ("INCR n", b":1\r\n"),
        ("INCR k", b"-ERR value is not an integer or out of range\r\n"),
        ("LRANGE l 0 -1", b"*3\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n"),
        ("LRANGE none 0 -1", b"*0\r\n"),
        ("ZSCORE z m (RESP2)", b"$3\r\n1.5\r\n"),
        (
            "HGETALL h (RESP2)",
            b"*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n",
        ),
        (
            "EVALSHA ffff... 0",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ),
        (
            "HELLO 3",
            b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
        ),
        (
            "HGETALL h (RESP3)",
            b"%2\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n",
        ),
        ("SMEMBERS s", b"~1\r\n$1\r\nx\r\n"),
        ("ZSCORE z m (RESP3)", b",1.5\r\n"),
        ("ZSCORE z i (RESP3)", b",inf\r\n"),
        ("GET missing (RESP3)", b"_\r\n"),
        ("EVAL 'redis.setresp(3); return true' 0", b"#t\r\n"),
        ("EVAL 'return {double=3.14}' 0", b",3.1400000000000001\r\n"),
        (
            "EVAL 'return {big_number=...}' 0",
            b"(1234567890123456789012345678901234567890\r\n",
        ),
        ("EVAL 'return {verbatim_string=...}' 0", b"=9\r\ntxt:hello\r\n"),
        (
            "DEBUG PROTOCOL map",
            b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n",
        ),
        (
            "DEBUG PROTOCOL attrib",
            b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$39\r\nSome real reply following the attribute\r\n",
        ),
        (
            "DEBUG PROTOCOL push (the push, then the reply)",
            b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n",
        ),
        (
            "DEBUG PROTOCOL verbatim",
            b"=29\r\ntxt:This is a verbatim\nstring\r\n",
        ),
        (
            "SUBSCRIBE ch (RESP2)",
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
        ),
        (
            "message (RESP2)",
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
        ),
        (
            "pmessage (RESP3)",
            b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$5\r\nhello\r\n",
        ),
        (
            "UNSUBSCRIBE with none left (RESP3)",
            b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n",
        ),
        ("PING when subscribed (RESP2)", b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
    ];

    // 3.14 below is the number a script returned, not an approximation of π.
    #[allow(clippy::approx_constant)]
    fn expected(name: &str) -> Frame {
        let kv = |k: &[u8], v: Frame| (bulk(k), v);
        match name {
            "PING" => simple(b"PONG"),
            "SET k v" => simple(b"OK"),
            "GET k" => bulk(b"v"),
            "GET missing (RESP2)" | "GET missing (RESP3)" => Frame::Null,
            "INCR n" => Frame::Integer(1),
            "INCR k" => Frame::Error(b"ERR value is not an integer or out of range".to_vec()),
            "LRANGE l 0 -1" => Frame::Array(vec![bulk(b"c"), bulk(b"b"), bulk(b"a")]),
            "LRANGE none 0 -1" => Frame::Array(vec![]),
            "ZSCORE z m (RESP2)" => bulk(b"1.5"),
            "HGETALL h (RESP2)" => {
                Frame::Array(vec![bulk(b"f1"), bulk(b"v1"), bulk(b"f2"), bulk(b"v2")])
            }
            "EVALSHA ffff... 0" => {
                Frame::Error(b"NOSCRIPT No matching script. Please use EVAL.".to_vec())
            }
            "HELLO 3" => Frame::Map(vec![
                kv(b"server", bulk(b"redis")),
                kv(b"version", bulk(b"7.0.15")),
                kv(b"proto", Frame::Integer(3)),
                kv(b"id", Frame::Integer(3)),
                kv(b"mode", bulk(b"standalone")),
                kv(b"role", bulk(b"master")),
                kv(b"modules", Frame::Array(vec![])),
            ]),
            "HGETALL h (RESP3)" => Frame::Map(vec![kv(b"f1", bulk(b"v1")), kv(b"f2", bulk(b"v2"))]),
            "SMEMBERS s" => Frame::Set(vec![bulk(b"x")]),
            "ZSCORE z m (RESP3)" => Frame::Double(1.5),
            "ZSCORE z i (RESP3)" => Frame::Double(f64::INFINITY),
            "EVAL 'redis.setresp(3); return true' 0" => Frame::Boolean(true),
            "EVAL 'return {double=3.14}' 0" => Frame::Double(3.14),
            "EVAL 'return {big_number=...}' 0" => {
                Frame::BigNumber("1234567890123456789012345678901234567890".to_owned())
            }
            "EVAL 'return {verbatim_string=...}' 0" => Frame::Verbatim {
                format: *b"txt",
                text: b"hello".to_vec(),
            },
            "DEBUG PROTOCOL map" => Frame::Map(vec![
                (Frame::Integer(0), Frame::Boolean(false)),
                (Frame::Integer(1), Frame::Boolean(true)),
                (Frame::Integer(2), Frame::Boolean(false)),
            ]),
            "DEBUG PROTOCOL attrib" => Frame::Attributed {
                attrs: vec![kv(
                    b"key-popularity",
                    Frame::Array(vec![bulk(b"key:123"), Frame::Integer(90)]),
                )],
                frame: Box::new(bulk(b"Some real reply following the attribute")),
            },
            "DEBUG PROTOCOL push (the push, then the reply)" => {
                Frame::Push(vec![bulk(b"server-cpu-usage"), Frame::Integer(42)])
            }
            "DEBUG PROTOCOL verbatim" => Frame::Verbatim {
                format: *b"txt",
                text: b"This is a verbatim\nstring".to_vec(),
            },
            "SUBSCRIBE ch (RESP2)" => {
                Frame::Array(vec![bulk(b"subscribe"), bulk(b"ch"), Frame::Integer(1)])
            }
            "message (RESP2)" => Frame::Array(vec![bulk(b"message"), bulk(b"ch"), bulk(b"hello")]),
            "pmessage (RESP3)" => Frame::Push(vec![
                bulk(b"pmessage"),
                bulk(b"c*"),
                bulk(b"ch"),
                bulk(b"hello"),
            ]),
            "UNSUBSCRIBE with none left (RESP3)" => {
                Frame::Push(vec![bulk(b"unsubscribe"), Frame::Null, Frame::Integer(0)])
            }
            "PING when subscribed (RESP2)" => Frame::Array(vec![bulk(b"pong"), bulk(b"")]),
            other => panic!("no expected frame for {other}"),
        }
    }

    #[test]
    fn decodes_every_captured_reply() {
        for (name, bytes) in FIXTURES {
            let got = decode_one(bytes);
            assert_eq!(got, Ok(Some((bytes.len(), expected(name)))), "{name}");
        }
    }

    #[test]
    fn every_strict_prefix_of_a_reply_is_incomplete() {
        for (name, bytes) in FIXTURES {
            for end in 0..bytes.len() {
                let prefix = bytes.get(..end).unwrap_or_default();
                assert_eq!(decode_one(prefix), Ok(None), "{name} cut at {end}");
            }
        }
    }

    #[test]
    fn decodes_stream_split_at_every_point() {
        let stream: Vec<u8> = FIXTURES
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        let want: Vec<Frame> = FIXTURES.iter().map(|(n, _)| expected(n)).collect();
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let (frames, err, rest) = decode_pieces(RespLimits::default(), [a, b]);
            assert_eq!(err, None, "cut at {cut}");
            assert!(rest.is_empty());
            assert_eq!(frames, want, "cut at {cut}");
        }
        let (frames, err, _) = decode_pieces(RespLimits::default(), stream.chunks(1));
        assert_eq!(err, None);
        assert_eq!(frames, want);
    }

    #[test]
    fn decodes_each_type() {
        let cases: &[(&[u8], Frame)] = &[
            (b"+\r\n", simple(b"")),
            (b"-ERR x\r\n", Frame::Error(b"ERR x".to_vec())),
            (b":-9223372036854775808\r\n", Frame::Integer(i64::MIN)),
            (b":9223372036854775807\r\n", Frame::Integer(i64::MAX)),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$4\r\na\r\nb\r\n", bulk(b"a\r\nb")),
            (b"*-1\r\n", Frame::Null),
            (b"_\r\n", Frame::Null),
            (b"#f\r\n", Frame::Boolean(false)),
            (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
            (b",1e10\r\n", Frame::Double(1e10)),
            (b",-2.5E-3\r\n", Frame::Double(-2.5e-3)),
            (b",10\r\n", Frame::Double(10.0)),
            (b"(-12\r\n", Frame::BigNumber("-12".to_owned())),
            (b"!5\r\nOOPS!\r\n", Frame::BulkError(b"OOPS!".to_vec())),
            (
                b"=4\r\nmkd:\r\n",
                Frame::Verbatim {
                    format: *b"mkd",
                    text: Vec::new(),
                },
            ),
            (b"%0\r\n", Frame::Map(vec![])),
            (
                b"~2\r\n:1\r\n:1\r\n",
                Frame::Set(vec![Frame::Integer(1), Frame::Integer(1)]),
            ),
            (b">1\r\n+x\r\n", Frame::Push(vec![simple(b"x")])),
            (
                b"*2\r\n*1\r\n:1\r\n%1\r\n+k\r\n_\r\n",
                Frame::Array(vec![
                    Frame::Array(vec![Frame::Integer(1)]),
                    Frame::Map(vec![(simple(b"k"), Frame::Null)]),
                ]),
            ),
        ];
        for (bytes, frame) in cases {
            assert_eq!(
                decode_one(bytes),
                Ok(Some((bytes.len(), frame.clone()))),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn decodes_nan_double() {
        let Ok(Some((6, Frame::Double(d)))) = decode_one(b",nan\r\n") else {
            panic!("nan not decoded");
        };
        assert!(d.is_nan());
    }

    #[test]
    fn consumes_only_the_first_frame() {
        assert_eq!(
            decode_one(b":1\r\n:2\r\n"),
            Ok(Some((4, Frame::Integer(1))))
        );
    }

    #[test]
    fn attribute_inside_array_is_not_an_element() {
        let bytes = b"*2\r\n|1\r\n+a\r\n:1\r\n:10\r\n:20\r\n";
        let want = Frame::Array(vec![
            Frame::Attributed {
                attrs: vec![(simple(b"a"), Frame::Integer(1))],
                frame: Box::new(Frame::Integer(10)),
            },
            Frame::Integer(20),
        ]);
        assert_eq!(decode_one(bytes), Ok(Some((bytes.len(), want))));
    }

    #[test]
    fn consecutive_attributes_are_merged() {
        let bytes = b"|1\r\n+a\r\n:1\r\n|0\r\n|1\r\n+b\r\n:2\r\n_\r\n";
        let want = Frame::Attributed {
            attrs: vec![
                (simple(b"a"), Frame::Integer(1)),
                (simple(b"b"), Frame::Integer(2)),
            ],
            frame: Box::new(Frame::Null),
        };
        assert_eq!(decode_one(bytes), Ok(Some((bytes.len(), want.clone()))));
        assert_eq!(want.without_attributes(), Frame::Null);
    }

    #[test]
    fn merged_attributes_keep_within_the_item_limit() {
        // Found by the `resp` fuzz target: each attribute was within the
        // limit, the merged map was not.
        let limits = RespLimits {
            max_elements: 1,
            ..RespLimits::default()
        };
        let bytes = b"|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n:0\r\n";
        assert_eq!(
            decode_with(limits, bytes),
            Err(RespError::TooManyElements { count: 2, max: 1 })
        );
        assert!(matches!(
            decode_with(limits, b"|1\r\n+a\r\n:1\r\n|0\r\n:0\r\n"),
            Ok(Some(_))
        ));
    }

    #[test]
    fn attribute_alone_is_incomplete() {
        assert_eq!(decode_one(b"|1\r\n+a\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn rejects_aggregates_deeper_than_the_limit() {
        let limits = RespLimits {
            max_depth: 2,
            ..RespLimits::default()
        };
        assert!(matches!(
            decode_with(limits, b"*1\r\n*1\r\n:1\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(decode_with(limits, b"*1\r\n*0\r\n"), Ok(Some(_))));
        for bytes in [
            &b"*1\r\n*1\r\n*0\r\n"[..],
            b"*1\r\n%1\r\n~1\r\n",
            b"*1\r\n*1\r\n|0\r\n",
            b">1\r\n>1\r\n*1\r\n:1\r\n",
        ] {
            assert_eq!(
                decode_with(limits, bytes),
                Err(RespError::TooDeep { max: 2 }),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let scalars_only = RespLimits {
            max_depth: 0,
            ..RespLimits::default()
        };
        assert_eq!(
            decode_with(scalars_only, b":1\r\n"),
            Ok(Some((4, Frame::Integer(1))))
        );
        assert_eq!(
            decode_with(scalars_only, b"$-1\r\n"),
            Ok(Some((5, Frame::Null)))
        );
        assert_eq!(
            decode_with(scalars_only, b"*-1\r\n"),
            Ok(Some((5, Frame::Null)))
        );
        assert_eq!(
            decode_with(scalars_only, b"*0\r\n"),
            Err(RespError::TooDeep { max: 0 })
        );
    }

    #[test]
    fn deep_nesting_within_the_limit_uses_no_recursion() {
        let depth = 10_000;
        let limits = RespLimits {
            max_depth: depth,
            ..RespLimits::default()
        };
        let mut bytes = b"*1\r\n".repeat(depth);
        bytes.extend_from_slice(b":7\r\n");
        let mut frame = match decode_with(limits, &bytes) {
            Ok(Some((n, frame))) if n == bytes.len() => frame,
            other => panic!("unexpected {other:?}"),
        };
        // Unwrap level by level: dropping 10 000 nested boxes recursively
        // could overflow the test thread's stack.
        let mut levels = 0;
        while let Frame::Array(mut items) = frame {
            frame = items.pop().unwrap_or(Frame::Null);
            levels += 1;
        }
        assert_eq!((levels, frame), (depth, Frame::Integer(7)));
    }

    #[test]
    fn rejects_bulk_over_the_limit_from_its_header() {
        let limits = RespLimits {
            max_bulk_bytes: 4,
            ..RespLimits::default()
        };
        assert_eq!(
            decode_with(limits, b"$4\r\nabcd\r\n"),
            Ok(Some((10, bulk(b"abcd"))))
        );
        for bytes in [&b"$5\r\n"[..], b"!5\r\n", b"=9\r\n", b"*1\r\n$5\r\nab"] {
            assert!(
                matches!(
                    decode_with(limits, bytes),
                    Err(RespError::BulkTooBig { len: 5.., max: 4 })
                ),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn huge_declared_sizes_allocate_nothing_up_front() {
        let limits = RespLimits {
            max_elements: usize::MAX,
            max_bulk_bytes: usize::MAX,
            max_frame_bytes: usize::MAX,
            ..RespLimits::default()
        };
        // Reserving these sizes would abort the test process.
        assert_eq!(decode_with(limits, b"$9223372036854775807\r\nab"), Ok(None));
        assert_eq!(
            decode_with(limits, b"*9223372036854775807\r\n:1\r\n"),
            Ok(None)
        );
        assert_eq!(
            decode_with(limits, b"%9223372036854775807\r\n:1\r\n"),
            Ok(None)
        );
        assert_eq!(
            decode_with(limits, b"*1\r\n$18446744073709551615\r\n"),
            Ok(None)
        );
    }

    #[test]
    fn rejects_aggregate_with_too_many_elements_from_its_header() {
        let limits = RespLimits {
            max_elements: 2,
            ..RespLimits::default()
        };
        assert!(matches!(
            decode_with(limits, b"*2\r\n:1\r\n:2\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(
            decode_with(limits, b"%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n"),
            Ok(Some(_))
        ));
        for (bytes, count) in [
            (&b"*3\r\n"[..], 3),
            (b"%3\r\n", 3),
            (b"~4294967296\r\n", 4_294_967_296),
            (b"*1\r\n>3\r\n", 3),
            (b"|3\r\n", 3),
        ] {
            assert_eq!(
                decode_with(limits, bytes),
                Err(RespError::TooManyElements { count, max: 2 })
            );
        }
    }

    #[test]
    fn rejects_long_line_before_its_end_arrives() {
        let limits = RespLimits {
            max_line_bytes: 3,
            ..RespLimits::default()
        };
        assert_eq!(decode_with(limits, b"+abc\r"), Ok(None));
        assert_eq!(
            decode_with(limits, b"+abc\r\n"),
            Ok(Some((6, simple(b"abc"))))
        );
        assert_eq!(
            decode_with(limits, b"+abcd"),
            Err(RespError::LineTooLong { max: 3 })
        );
        assert_eq!(
            decode_with(limits, b"+abcd\r\n"),
            Err(RespError::LineTooLong { max: 3 })
        );
        assert_eq!(
            decode_with(limits, b"$1234"),
            Err(RespError::LineTooLong { max: 3 })
        );
    }

    #[test]
    fn rejects_frame_over_the_limit() {
        let limits = RespLimits {
            max_frame_bytes: 10,
            ..RespLimits::default()
        };
        assert_eq!(
            decode_with(limits, b"$4\r\nabcd\r\n"),
            Ok(Some((10, bulk(b"abcd"))))
        );
        assert_eq!(
            decode_with(limits, b"$5\r\nabcde\r\n"),
            Err(RespError::FrameTooBig { max: 10 })
        );
        assert_eq!(
            decode_with(limits, b"*3\r\n:1\r\n:2\r\n"),
            Err(RespError::FrameTooBig { max: 10 })
        );
        // An error past the limit is still reported as the frame being too big.
        assert_eq!(
            decode_with(limits, b"*3\r\n:1\r\n:2\r\nXXXX"),
            Err(RespError::FrameTooBig { max: 10 })
        );
    }

    #[test]
    fn rejects_negative_and_invalid_lengths() {
        for bytes in [
            &b"$-2\r\n"[..],
            b"*-2\r\n",
            b"$-0\r\n",
            b"%-1\r\n",
            b"~-1\r\n",
            b">-1\r\n",
            b"|-1\r\n",
            b"!-1\r\n",
            b"=-1\r\n",
            b"$\r\n",
            b"*\r\n",
            b"$+1\r\n",
            b"$ 1\r\n",
            b"$1 \r\n",
            b"*0x10\r\n",
            b"$99999999999999999999999\r\n",
            b"$?\r\n",
            b"*?\r\n",
        ] {
            assert_eq!(
                decode_one(bytes),
                Err(RespError::BadLength),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn rejects_lines_not_ended_by_crlf() {
        for bytes in [
            &b"+OK\n"[..],
            b"+OK\rX",
            b"+O\nK\r\n",
            b":1\n",
            b"$2\r\nabXY",
            b"$2\r\nab\rX",
            b"$2\r\nab\n\r",
            b"*1\r\n+a\n",
            b"$2\n",
        ] {
            assert_eq!(
                decode_one(bytes),
                Err(RespError::BadLineEnd),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // The payload's own CRLF is data; only the two bytes after it count.
        assert_eq!(decode_one(b"$2\r\nab\r"), Ok(None));
    }

    #[test]
    fn rejects_bad_scalars() {
        let cases: &[(&[u8], RespError)] = &[
            (b"X\r\n", RespError::UnknownType { byte: b'X' }),
            (b"\r\n", RespError::UnknownType { byte: b'\r' }),
            (b"PING\r\n", RespError::UnknownType { byte: b'P' }),
            (b":\r\n", RespError::BadInteger),
            (b":-\r\n", RespError::BadInteger),
            (b":+1\r\n", RespError::BadInteger),
            (b":1.0\r\n", RespError::BadInteger),
            (b":9223372036854775808\r\n", RespError::BadInteger),
            (b":-9223372036854775809\r\n", RespError::BadInteger),
            (b",\r\n", RespError::BadDouble),
            (b",abc\r\n", RespError::BadDouble),
            (b",infinity\r\n", RespError::BadDouble),
            (b",1.2.3\r\n", RespError::BadDouble),
            (b",e5\r\n", RespError::BadDouble),
            (b"#\r\n", RespError::BadBoolean),
            (b"#true\r\n", RespError::BadBoolean),
            (b"#T\r\n", RespError::BadBoolean),
            (b"(\r\n", RespError::BadBigNumber),
            (b"(12a\r\n", RespError::BadBigNumber),
            (b"(+1\r\n", RespError::BadBigNumber),
            (b"_x\r\n", RespError::BadNull),
            (b"=3\r\ntxt\r\n", RespError::BadVerbatim),
            (b"=4\r\ntxtX\r\n", RespError::BadVerbatim),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                decode_one(bytes),
                Err(*err),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn waits_for_a_large_bulk_without_reparsing() {
        let mut dec = RespDecoder::new(RespLimits::default());
        let mut input = b"*2\r\n:1\r\n$100000\r\n".to_vec();
        assert_eq!(dec.decode(&input), Ok(None));
        assert_eq!(dec.need, input.len() + 100_002);
        input.resize(input.len() + 100_000, b'x');
        assert_eq!(dec.decode(&input), Ok(None));
        input.extend_from_slice(b"\r\n");
        let Ok(Some((n, Frame::Array(items)))) = dec.decode(&input) else {
            panic!("array not decoded");
        };
        assert_eq!((n, items.len()), (input.len(), 2));
        assert_eq!(dec.need, 0);
        // After `reset`, unrelated input is parsed from scratch.
        assert_eq!(dec.decode(b"$5\r\nab"), Ok(None));
        dec.reset();
        assert_eq!(dec.decode(b":1\r\n"), Ok(Some((4, Frame::Integer(1)))));
    }

    #[test]
    fn encodes_command_as_array_of_bulks() {
        let mut out = Vec::new();
        encode_command(&[b"SET", b"k", b"a\r\nb", b""], &mut out);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$0\r\n\r\n"
        );
        let decoded = decode_one(&out);
        let want = Frame::Array(vec![bulk(b"SET"), bulk(b"k"), bulk(b"a\r\nb"), bulk(b"")]);
        assert_eq!(decoded, Ok(Some((out.len(), want))));
    }

    #[test]
    fn encodes_inline_command_with_quoting() {
        let mut out = Vec::new();
        encode_inline(&[b"PING"], &mut out);
        assert_eq!(out, b"PING\r\n");
        out.clear();
        encode_inline(
            &[b"SET", b"k:1", b"a b", b"", b"q\"\\'", b"\x00\xff\t\r\n"],
            &mut out,
        );
        assert_eq!(
            out,
            b"SET k:1 \"a b\" \"\" \"q\\\"\\\\'\" \"\\x00\\xff\\t\\r\\n\"\r\n".to_vec()
        );
    }

    #[test]
    fn encodes_every_type() {
        let cases: &[(Frame, &[u8])] = &[
            (Frame::Null, b"_\r\n"),
            (Frame::Integer(-5), b":-5\r\n"),
            (Frame::Double(1.5), b",1.5\r\n"),
            (Frame::Double(1e300), b",1e300\r\n"),
            (Frame::Double(f64::NAN), b",nan\r\n"),
            (Frame::Double(f64::NEG_INFINITY), b",-inf\r\n"),
            (Frame::Boolean(true), b"#t\r\n"),
            (simple(b"a\r\nb"), b"+a  b\r\n"),
            (Frame::Error(b"ERR\nx".to_vec()), b"-ERR x\r\n"),
            (Frame::BulkError(b"E\r\n".to_vec()), b"!3\r\nE\r\n\r\n"),
            (
                Frame::Verbatim {
                    format: *b"txt",
                    text: b"hi".to_vec(),
                },
                b"=6\r\ntxt:hi\r\n",
            ),
            (Frame::BigNumber("-1".to_owned()), b"(-1\r\n"),
        ];
        for (frame, bytes) in cases {
            let mut out = Vec::new();
            encode(frame, &mut out);
            assert_eq!(out, *bytes, "{frame:?}");
        }
    }

    #[test]
    fn captured_replies_encode_back_to_the_same_bytes() {
        // Every captured reply except RESP2 nulls (written back as `_`) and
        // the doubles Redis prints with more digits than needed.
        for (name, bytes) in FIXTURES {
            if name.contains("missing (RESP2)") || name.contains("double") {
                continue;
            }
            let mut out = Vec::new();
            encode(&expected(name), &mut out);
            assert_eq!(out, *bytes, "{name}");
        }
    }

    #[test]
    fn reads_pubsub_frames_in_both_protocols() {
        let cases: &[(&[u8], PubSub)] = &[
            (
                b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
                PubSub::Message {
                    channel: b"ch".to_vec(),
                    payload: b"hello".to_vec(),
                },
            ),
            (
                b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
                PubSub::Message {
                    channel: b"ch".to_vec(),
                    payload: b"hello".to_vec(),
                },
            ),
            (
                b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$5\r\nhello\r\n",
                PubSub::PatternMessage {
                    pattern: b"c*".to_vec(),
                    channel: b"ch".to_vec(),
                    payload: b"hello".to_vec(),
                },
            ),
            (
                b">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$0\r\n\r\n",
                PubSub::ShardMessage {
                    channel: b"s".to_vec(),
                    payload: Vec::new(),
                },
            ),
            (
                b">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n",
                PubSub::Subscribed {
                    kind: SubscriptionKind::Pattern,
                    channel: b"c*".to_vec(),
                    count: 2,
                },
            ),
            (
                b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nc*\r\n:0\r\n",
                PubSub::Unsubscribed {
                    kind: SubscriptionKind::Pattern,
                    channel: Some(b"c*".to_vec()),
                    count: 0,
                },
            ),
            (
                b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
                PubSub::Unsubscribed {
                    kind: SubscriptionKind::Channel,
                    channel: None,
                    count: 0,
                },
            ),
            (
                b">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n",
                PubSub::Unsubscribed {
                    kind: SubscriptionKind::Shard,
                    channel: None,
                    count: 0,
                },
            ),
            (
                b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
                PubSub::Pong {
                    payload: Vec::new(),
                },
            ),
        ];
        for (bytes, want) in cases {
            let Ok(Some((_, frame))) = decode_one(bytes) else {
                panic!("not decoded: {}", String::from_utf8_lossy(bytes));
            };
            assert_eq!(PubSub::from_frame(frame), Ok(want.clone()));
        }
    }

    #[test]
    fn other_frames_are_not_pubsub_and_come_back_unchanged() {
        let frames = [
            simple(b"PONG"),
            Frame::Array(vec![]),
            Frame::Array(vec![bulk(b"message"), bulk(b"ch")]),
            Frame::Array(vec![bulk(b"message"), bulk(b"ch"), Frame::Integer(1)]),
            Frame::Array(vec![bulk(b"MESSAGE"), bulk(b"ch"), bulk(b"x")]),
            Frame::Array(vec![bulk(b"subscribe"), bulk(b"ch"), bulk(b"1")]),
            Frame::Array(vec![bulk(b"subscribe"), Frame::Null, Frame::Integer(1)]),
            Frame::Push(vec![bulk(b"invalidate"), Frame::Array(vec![bulk(b"k")])]),
            Frame::Array(vec![bulk(b"c"), bulk(b"b"), bulk(b"a")]),
        ];
        for frame in frames {
            assert_eq!(PubSub::from_frame(frame.clone()), Err(frame));
        }
    }

    #[test]
    fn errors_have_a_message() {
        let errors = [
            RespError::UnknownType { byte: b'X' },
            RespError::BadLineEnd,
            RespError::BadLength,
            RespError::BadInteger,
            RespError::BadDouble,
            RespError::BadBoolean,
            RespError::BadBigNumber,
            RespError::BadNull,
            RespError::BadVerbatim,
            RespError::LineTooLong { max: 1 },
            RespError::TooDeep { max: 1 },
            RespError::BulkTooBig { len: 2, max: 1 },
            RespError::TooManyElements { count: 2, max: 1 },
            RespError::FrameTooBig { max: 1 },
        ];
        assert_eq!(
            RespError::UnknownType { byte: b'X' }.to_string(),
            "unknown RESP type byte 0x58"
        );
        for e in errors {
            assert!(!e.to_string().is_empty());
        }
    }

    fn text_without_crlf() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            0..12,
        )
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..24)
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let leaf = prop_oneof![
            text_without_crlf().prop_map(Frame::Simple),
            text_without_crlf().prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            bytes().prop_map(Frame::Bulk),
            Just(Frame::Null),
            any::<bool>().prop_map(Frame::Boolean),
            any::<f64>()
                .prop_filter("NaN never equals itself", |d| !d.is_nan())
                .prop_map(Frame::Double),
            "-?[0-9]{1,45}".prop_map(Frame::BigNumber),
            bytes().prop_map(Frame::BulkError),
            (any::<[u8; 3]>(), bytes()).prop_map(|(format, text)| Frame::Verbatim { format, text }),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let items = proptest::collection::vec(inner.clone(), 0..6);
            let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..4);
            prop_oneof![
                items.clone().prop_map(Frame::Array),
                items.clone().prop_map(Frame::Set),
                items.prop_map(Frame::Push),
                pairs.clone().prop_map(Frame::Map),
                (pairs, inner).prop_map(|(attrs, frame)| Frame::Attributed {
                    attrs,
                    frame: Box::new(frame.without_attributes()),
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(frames in proptest::collection::vec(arb_frame(), 1..4), cut in any::<usize>()) {
            let mut stream = Vec::new();
            for f in &frames {
                encode(f, &mut stream);
            }
            let (whole, err, rest) = decode_pieces(RespLimits::default(), [&stream[..]]);
            prop_assert_eq!(err, None);
            prop_assert!(rest.is_empty());
            prop_assert_eq!(&whole, &frames);
            let (a, b) = stream.split_at(cut % (stream.len() + 1));
            let (split, err, _) = decode_pieces(RespLimits::default(), [a, b]);
            prop_assert_eq!(err, None);
            prop_assert_eq!(split, frames);
        }

        #[test]
        fn decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300), cut in any::<usize>()) {
            let limits = RespLimits { max_depth: 4, max_elements: 8, max_bulk_bytes: 16, max_line_bytes: 16, max_frame_bytes: 200 };
            let whole = decode_pieces(limits, [&input[..]]);
            let (a, b) = input.split_at(cut % (input.len() + 1));
            let split = decode_pieces(limits, [a, b]);
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn decode_of_damaged_frames_never_panics(
            frame in arb_frame(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = Vec::new();
            encode(&frame, &mut bytes);
            for (at, b) in flips {
                let at = at % bytes.len();
                if let Some(slot) = bytes.get_mut(at) {
                    *slot = b;
                }
            }
            let whole = decode_pieces(RespLimits::default(), [&bytes[..]]);
            let bytewise = decode_pieces(RespLimits::default(), bytes.chunks(1));
            prop_assert_eq!(whole, bytewise);
        }
    }
}
