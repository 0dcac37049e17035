//! `json::parse` and the chat decoders on arbitrary lines.
//!
//! Invariants: nothing panics; `parse` respects its nesting limit; a string
//! value written by `json::write_str` parses back to the same string; a text
//! line without a leading `/` decodes to exactly itself; `decode_json` only
//! accepts lines that `json::parse` accepts as an object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::proto::chat::{self, ClientMsg, MAX_JSON_DEPTH};
use multiuserchat::proto::json::{self, Value};

/// Deepest array/object nesting in `v` (0 for a scalar).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for max_depth in [0, 3, MAX_JSON_DEPTH] {
            if let Ok(value) = json::parse(text, max_depth) {
                assert!(depth(&value) <= max_depth, "nesting limit ignored");
            }
        }
        let mut quoted = Vec::new();
        json::write_str(&mut quoted, text);
        let quoted = std::str::from_utf8(&quoted).expect("write_str output is UTF-8");
        assert_eq!(
            json::parse(quoted, 0),
            Ok(Value::String(text.to_owned())),
            "write_str does not round-trip"
        );
    }

    let decoded = chat::decode_json(data);
    if decoded.is_ok() {
        let text = std::str::from_utf8(data).expect("decode_json accepted non-UTF-8");
        assert!(matches!(
            json::parse(text, MAX_JSON_DEPTH),
            Ok(Value::Object(_))
        ));
    }
    let _ = chat::looks_like_json(data);
    let _ = chat::decode_text_name(data);
    match chat::decode_text(data) {
        Ok(ClientMsg::Message { room: None, text })
            if !data.starts_with(b"/") && !data.starts_with(b"@") =>
        {
            assert_eq!(text.as_bytes(), data);
        }
        // `@NAME TEXT`: a private message whose name and text come from the line.
        Ok(ClientMsg::Private { to, text }) if data.starts_with(b"@") => {
            assert!(!to.is_empty() && !text.trim().is_empty());
            assert!(data.windows(to.len()).any(|w| w == to.as_bytes()));
        }
        Ok(other) if !data.starts_with(b"/") => panic!("plain line decoded as {other:?}"),
        _ => {}
    }
});
