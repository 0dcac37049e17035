//! WebSocket frame layer (RFC 6455 §5.2): opcodes, the frame header of a
//! client frame, the masking transform, and server frame encoding.
//!
//! Owns the wire layout only. It does not know about messages, fragments,
//! limits or close handshakes; those live in `session.rs`. The header decoder
//! checks everything a header alone can tell (reserved bits, reserved
//! opcodes, masking, control frame shape, the 64-bit length MSB) and reports
//! a violation as soon as the byte carrying it has arrived.

use std::fmt;

use super::close::CloseCode;

/// A frame opcode (RFC 6455 §5.2). Reserved values (3-7, 11-15) have no
/// variant: [`Opcode::from_u8`] returns `None` for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// Decodes the low 4 bits of the first header byte. `None` for the
    /// reserved non-control (3-7) and control (11-15) opcodes.
    pub const fn from_u8(op: u8) -> Option<Opcode> {
        match op {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    pub const fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// RFC 6455 §5.5: control frames have the high opcode bit set.
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest possible frame header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_BYTES: usize = 14;

/// A decoded client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    /// RFC 6455 §5.3: every client frame carries a masking key.
    pub mask: [u8; 4],
    pub payload_len: u64,
}

/// A header that breaks RFC 6455 §5.2; every variant fails the connection with 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 6455 §5.2: RSV1-3 must be 0 unless an extension was negotiated (none is).
    ReservedBits,
    /// RFC 6455 §5.2: opcodes 3-7 and 11-15 are reserved.
    ReservedOpcode(u8),
    /// RFC 6455 §5.1: a server must close on an unmasked client frame.
    Unmasked,
    /// RFC 6455 §5.5: control frames must not be fragmented.
    FragmentedControl,
    /// RFC 6455 §5.5: control payloads are at most 125 bytes.
    ControlTooLong,
    /// RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    LengthOverflow,
}

impl FrameError {
    /// The close code to fail the connection with.
    pub fn close_code(&self) -> CloseCode {
        CloseCode::PROTOCOL_ERROR
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => f.write_str("reserved bits set without an extension"),
            FrameError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::Unmasked => f.write_str("unmasked client frame"),
            FrameError::FragmentedControl => f.write_str("fragmented control frame"),
            FrameError::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            FrameError::LengthOverflow => f.write_str("64-bit payload length with the MSB set"),
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameHeader {
    /// Tries to decode one client frame header from the start of `input`.
    ///
    /// `Ok(None)`: more bytes needed, nothing consumed (fewer than
    /// [`MAX_HEADER_BYTES`] bytes are ever held back). `Ok(Some((n, header)))`:
    /// the header used the first `n` bytes; the payload follows. `Err` as soon
    /// as the bytes present show a violation, even if the header is not complete.
    pub fn decode(input: &[u8]) -> Result<Option<(usize, FrameHeader)>, FrameError> {
        let Some(&b0) = input.first() else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        // RFC 6455 §5.2: RSV1, RSV2, RSV3 must be 0 without a negotiated extension.
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        // RFC 6455 §5.2: reserved opcodes fail the connection.
        let op = b0 & 0x0F;
        let opcode = Opcode::from_u8(op).ok_or(FrameError::ReservedOpcode(op))?;
        // RFC 6455 §5.5: control frames must not be fragmented.
        if opcode.is_control() && !fin {
            return Err(FrameError::FragmentedControl);
        }
        let Some(&b1) = input.get(1) else {
            return Ok(None);
        };
        // RFC 6455 §5.1: the server must close the connection on an unmasked frame.
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let len7 = b1 & 0x7F;
        // RFC 6455 §5.5: control frame payloads are at most 125 bytes.
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::ControlTooLong);
        }
        // RFC 6455 §5.2: 126 → 16-bit length, 127 → 64-bit length, else 7-bit.
        // Non-minimal length encodings are accepted (the rule binds senders).
        let (payload_len, at) = match len7 {
            126 => match input.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => {
                if let Some(&first) = input.get(2) {
                    // RFC 6455 §5.2: the MSB of the 64-bit length must be 0.
                    if first & 0x80 != 0 {
                        return Err(FrameError::LengthOverflow);
                    }
                }
                match input.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                    Some(bytes) => (u64::from_be_bytes(bytes), 10),
                    None => return Ok(None),
                }
            }
            n => (u64::from(n), 2),
        };
        // RFC 6455 §5.3: the 4-byte masking key follows the length.
        let Some(mask) = input
            .get(at..at + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
        else {
            return Ok(None);
        };
        Ok(Some((
            at + 4,
            FrameHeader {
                fin,
                opcode,
                mask,
                payload_len,
            },
        )))
    }
}

/// RFC 6455 §5.3: XORs `buf` with the masking key, where `buf` starts at
/// byte `offset` of the frame payload (so a payload can be unmasked in the
/// pieces it arrives in). Works eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    let [a, b, c, d] = key;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
    }
    // The word part is a multiple of 4 bytes, so the tail starts at key[0].
    for (byte, k) in tail.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Appends a server frame header: FIN set, no RSV bits, unmasked (RFC 6455
/// §5.1: a server must not mask), with the shortest length encoding.
/// The payload of `payload_len` bytes is to follow; this lets one broadcast
/// payload be framed once and shared. Control frames must stay within 125 bytes.
pub fn frame_header(opcode: Opcode, payload_len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode.as_u8());
    if payload_len <= 125 {
        // Fits in 7 bits: checked just above.
        out.push(payload_len as u8);
    } else if let Ok(len16) = u16::try_from(payload_len) {
        out.push(126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// Appends a complete single-frame server message (header + payload).
pub fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 10);
    frame_header(opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Client-side framing for tests: any first byte, masked with `mask`.
#[cfg(test)]
pub(super) fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn decodes_rfc_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (n, h) = FrameHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                opcode: Opcode::Text,
                mask: MASK,
                payload_len: 5
            }
        );
        let mut payload = bytes[6..].to_vec();
        apply_mask(&mut payload, h.mask, 0);
        assert_eq!(payload, b"Hello");
        assert_eq!(client_frame(0x81, b"Hello", MASK), bytes);
    }

    #[test]
    fn encodes_rfc_sample_frames() {
        // RFC 6455 §5.7 server-side (unmasked) samples.
        let mut out = Vec::new();
        encode_frame(Opcode::Text, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(Opcode::Pong, b"Hello", &mut out);
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        frame_header(Opcode::Binary, 256, &mut out);
        assert_eq!(out, [0x82, 0x7E, 0x01, 0x00]);
        out.clear();
        frame_header(Opcode::Binary, 65536, &mut out);
        assert_eq!(
            out,
            [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        out.clear();
        frame_header(Opcode::Binary, 125, &mut out);
        assert_eq!(out, [0x82, 125]);
        out.clear();
        frame_header(Opcode::Binary, 65535, &mut out);
        assert_eq!(out, [0x82, 126, 0xFF, 0xFF]);
    }

    #[test]
    fn decodes_16_and_64_bit_lengths() {
        let h256 = [0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4];
        let (n, h) = FrameHeader::decode(&h256).unwrap().unwrap();
        assert_eq!((n, h.payload_len, h.mask), (8, 256, [1, 2, 3, 4]));
        let h64k = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9];
        let (n, h) = FrameHeader::decode(&h64k).unwrap().unwrap();
        assert_eq!((n, h.payload_len), (14, 65536));
        // Every strict prefix is incomplete and consumes nothing.
        for cut in 0..h64k.len() {
            assert_eq!(FrameHeader::decode(&h64k[..cut]), Ok(None));
        }
    }

    #[test]
    fn rejects_header_violations_early() {
        assert_eq!(FrameHeader::decode(&[0xC1]), Err(FrameError::ReservedBits));
        assert_eq!(
            FrameHeader::decode(&[0x83]),
            Err(FrameError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::decode(&[0x8B]),
            Err(FrameError::ReservedOpcode(0xB))
        );
        assert_eq!(
            FrameHeader::decode(&[0x09]),
            Err(FrameError::FragmentedControl)
        );
        assert_eq!(
            FrameHeader::decode(&[0x81, 0x05]),
            Err(FrameError::Unmasked)
        );
        assert_eq!(
            FrameHeader::decode(&[0x89, 0xFE]),
            Err(FrameError::ControlTooLong)
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0xFF, 0x80]),
            Err(FrameError::LengthOverflow)
        );
        assert_eq!(FrameError::Unmasked.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn opcode_round_trip() {
        for op in 0u8..16 {
            match Opcode::from_u8(op) {
                Some(o) => assert_eq!(o.as_u8(), op),
                None => assert!(matches!(op, 3..=7 | 11..=15)),
            }
        }
    }

    fn any_opcode() -> impl Strategy<Value = Opcode> {
        prop_oneof![
            Just(Opcode::Continuation),
            Just(Opcode::Text),
            Just(Opcode::Binary),
            Just(Opcode::Close),
            Just(Opcode::Ping),
            Just(Opcode::Pong),
        ]
    }

    proptest! {
        // Payloads up to 70 KB cover all three length encodings; fewer cases keep debug runs quick.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn encode_mask_decode_round_trip(
            opcode in any_opcode(),
            payload in prop::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
        ) {
            let payload = if opcode.is_control() { &payload[..payload.len().min(125)] } else { &payload[..] };
            let mut wire = Vec::new();
            encode_frame(opcode, payload, &mut wire);
            // Turn the server frame into a client frame: set the mask bit, insert the key, mask.
            let hdr_len = wire.len() - payload.len();
            let mut client = wire[..hdr_len].to_vec();
            client[1] |= 0x80;
            client.extend_from_slice(&mask);
            let mut body = payload.to_vec();
            apply_mask(&mut body, mask, 0);
            client.extend_from_slice(&body);

            let (n, h) = FrameHeader::decode(&client).unwrap().unwrap();
            prop_assert_eq!(n, hdr_len + 4);
            prop_assert_eq!(h.opcode, opcode);
            prop_assert!(h.fin);
            prop_assert_eq!(h.payload_len, payload.len() as u64);
            let mut back = client[n..].to_vec();
            // Unmask in random-sized pieces to exercise the offset.
            let mut off = 0;
            for piece in back.chunks_mut(7) {
                apply_mask(piece, h.mask, off);
                off += piece.len();
            }
            prop_assert_eq!(&back[..], payload);
        }

        #[test]
        fn matches_tungstenite_encoding(
            payload in prop::collection::vec(any::<u8>(), 0..70_000),
        ) {
            use tungstenite::protocol::frame::Frame;
            let mut ours = Vec::new();
            encode_frame(Opcode::Binary, &payload, &mut ours);
            let frame = Frame::message(payload.clone(), tungstenite::protocol::frame::coding::OpCode::Data(
                tungstenite::protocol::frame::coding::Data::Binary), true);
            let mut theirs = Vec::new();
            frame.format(&mut theirs).unwrap();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn mask_offsets_compose(
            data in prop::collection::vec(any::<u8>(), 0..100),
            mask in any::<[u8; 4]>(),
            cut in 0usize..100,
        ) {
            let mut whole = data.clone();
            apply_mask(&mut whole, mask, 0);
            let mut parts = data.clone();
            let cut = cut.min(parts.len());
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, cut);
            prop_assert_eq!(&whole, &parts);
            let naive: Vec<u8> = data.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]).collect();
            prop_assert_eq!(whole, naive);
        }
    }
}
