//! A small, strict JSON reader and writer for the chat protocol.
//!
//! Owns RFC 8259 syntax: [`parse`] turns one JSON text into a [`Value`] tree and
//! [`write_str`] appends a quoted, escaped string. It knows nothing about chat
//! messages (see `chat.rs`), lines or sockets.
//!
//! How the reader works: one forward pass over the bytes with an explicit stack
//! of open arrays and objects instead of recursion, so no input and no
//! `max_depth` can overflow the call stack. Numbers are checked against the
//! grammar and kept as their source text, so `1e999999` or a 400-digit integer
//! costs nothing and loses nothing.

use std::fmt;

/// A parsed JSON value. Numbers keep their source text (no precision loss, no overflow).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number exactly as written, already checked against the RFC 8259 grammar.
    Number(String),
    /// A string with its escapes decoded.
    String(String),
    /// An array, in source order.
    Array(Vec<Value>),
    /// An object's members in source order; repeated keys are all kept.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The value of `key` when `self` is an object (the last one when repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string inside a `Value::String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items inside a `Value::Array`.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Why a JSON text was refused. Offsets are byte offsets into the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// A byte that the grammar does not allow at `offset`.
    Syntax {
        /// Byte offset of the offending byte.
        offset: usize,
    },
    /// The input ended inside a value (or held no value at all).
    UnexpectedEnd,
    /// A bad escape at `offset`: unknown letter, bad hex digits, or a lone or
    /// mismatched UTF-16 surrogate.
    BadEscape {
        /// Byte offset of the escape's backslash.
        offset: usize,
    },
    /// A raw control character (below U+0020) inside a string at `offset`.
    ControlChar {
        /// Byte offset of the control character.
        offset: usize,
    },
    /// Something other than whitespace after the value, starting at `offset`.
    TrailingData {
        /// Byte offset of the first byte after the value.
        offset: usize,
    },
    /// Arrays and objects nested deeper than `max`.
    TooDeep {
        /// The `max_depth` that was exceeded.
        max: usize,
    },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { offset } => write!(f, "unexpected character at byte {offset}"),
            JsonError::UnexpectedEnd => f.write_str("unexpected end of input"),
            JsonError::BadEscape { offset } => write!(f, "invalid escape at byte {offset}"),
            JsonError::ControlChar { offset } => {
                write!(f, "unescaped control character in string at byte {offset}")
            }
            JsonError::TrailingData { offset } => {
                write!(f, "trailing characters after the value at byte {offset}")
            }
            JsonError::TooDeep { max } => write!(f, "JSON nested deeper than {max}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON text (surrounding whitespace allowed), nesting at most `max_depth`.
///
/// `max_depth` counts open arrays and objects: with `max_depth = 2`, `[[1]]` is
/// accepted and `[[[1]]]` (or `[[[]]]`) is `Err(TooDeep)`; `0` allows scalars only.
/// Any other departure from RFC 8259 is an `Err` naming the byte offset where
/// it was found. Never panics; memory use is linear in the input.
///
/// Parsing itself never recurses, but dropping, cloning or comparing the
/// returned tree does, once per level: keep `max_depth` small (the chat
/// protocol uses 32).
pub fn parse(input: &str, max_depth: usize) -> Result<Value, JsonError> {
    Reader { src: input, pos: 0 }.document(max_depth)
}

/// Appends `s` as a quoted, escaped JSON string.
///
/// Escapes `"`, `\` and every control character below U+0020 (`\n \r \t \b \f`
/// by name, the rest as `\u00XX`); all other text, including non-ASCII, is
/// copied as raw UTF-8, one `extend_from_slice` per run of plain bytes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(bytes.get(run_start..i).unwrap_or_default());
        run_start = i + 1;
        if short == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex_digit(b >> 4), hex_digit(b)]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
    out.push(b'"');
}

/// The lowercase hex digit for the low four bits of `n`.
fn hex_digit(n: u8) -> u8 {
    b"0123456789abcdef"
        .get(usize::from(n & 0x0f))
        .copied()
        .unwrap_or(b'0')
}

/// An array or object that has been opened but not yet closed.
enum Open {
    Array(Vec<Value>),
    /// Members so far, and the key whose value is being read.
    Object(Vec<(String, Value)>, String),
}

/// What to do after a complete value has been attached to its parent.
enum Next {
    /// A `,` follows: read the next value into the same parent.
    Value,
    /// The parent was closed: it is now the complete value.
    Close,
}

/// The input and how far it has been read; `pos` never passes `src.len()`.
struct Reader<'a> {
    src: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    // RFC 8259 §2: insignificant whitespace is space, tab, LF and CR only.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// `Syntax` at the current byte, or `UnexpectedEnd` past the end.
    fn unexpected(&self) -> JsonError {
        if self.pos < self.src.len() {
            JsonError::Syntax { offset: self.pos }
        } else {
            JsonError::UnexpectedEnd
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn document(mut self, max_depth: usize) -> Result<Value, JsonError> {
        let mut stack: Vec<Open> = Vec::new();
        'values: loop {
            // Read the start of a value: a scalar is complete at once, an
            // empty container too; a non-empty container is pushed and its
            // first element read on the next pass.
            self.skip_ws();
            let mut value = match self.peek() {
                Some(open @ (b'[' | b'{')) => {
                    if stack.len() >= max_depth {
                        return Err(JsonError::TooDeep { max: max_depth });
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if open == b'[' {
                        if self.peek() == Some(b']') {
                            self.pos += 1;
                            Value::Array(Vec::new())
                        } else {
                            stack.push(Open::Array(Vec::new()));
                            continue 'values;
                        }
                    } else if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Value::Object(Vec::new())
                    } else {
                        let key = self.key()?;
                        stack.push(Open::Object(Vec::new(), key));
                        continue 'values;
                    }
                }
                Some(b'"') => Value::String(self.string()?),
                Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
                Some(b't') => self.literal("true", Value::Bool(true))?,
                Some(b'f') => self.literal("false", Value::Bool(false))?,
                Some(b'n') => self.literal("null", Value::Null)?,
                _ => return Err(self.unexpected()),
            };
            // Attach the complete value to its parent; closing the parent
            // completes another value, so repeat until a `,` or the top.
            loop {
                self.skip_ws();
                let next = match stack.last_mut() {
                    None => {
                        return if self.pos < self.src.len() {
                            Err(JsonError::TrailingData { offset: self.pos })
                        } else {
                            Ok(value)
                        };
                    }
                    Some(Open::Array(items)) => {
                        items.push(value);
                        match self.peek() {
                            Some(b',') => Next::Value,
                            Some(b']') => Next::Close,
                            _ => return Err(self.unexpected()),
                        }
                    }
                    Some(Open::Object(members, key)) => {
                        members.push((std::mem::take(key), value));
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                *key = self.key()?;
                                continue 'values;
                            }
                            Some(b'}') => Next::Close,
                            _ => return Err(self.unexpected()),
                        }
                    }
                };
                self.pos += 1;
                match next {
                    Next::Value => continue 'values,
                    Next::Close => {
                        value = match stack.pop() {
                            Some(Open::Array(items)) => Value::Array(items),
                            Some(Open::Object(members, _)) => Value::Object(members),
                            None => return Err(self.unexpected()),
                        };
                    }
                }
            }
        }
    }

    /// An object key and its `:`, leaving the reader before the value.
    fn key(&mut self) -> Result<String, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected());
        }
        let key = self.string()?;
        self.skip_ws();
        self.expect(b':')?;
        Ok(key)
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, JsonError> {
        for &expected in word.as_bytes() {
            if self.peek() != Some(expected) {
                return Err(self.unexpected());
            }
            self.pos += 1;
        }
        Ok(value)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    // RFC 8259 §6: number = [ minus ] int [ frac ] [ exp ]
    //              int = zero / ( digit1-9 *DIGIT ); frac = "." 1*DIGIT;
    //              exp = ("e" / "E") [ "-" / "+" ] 1*DIGIT
    fn number(&mut self) -> Result<String, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1, // no leading zeros: "01" stops after "0"
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.unexpected()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.unexpected());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.unexpected());
            }
        }
        let text = self
            .src
            .get(start..self.pos)
            .ok_or(JsonError::Syntax { offset: start })?;
        Ok(text.to_owned())
    }

    // RFC 8259 §7: a string is `"`, unescaped chars >= U+0020 except `"` and
    // `\`, or escapes; then `"`.
    fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"')?;
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                None => return Err(JsonError::UnexpectedEnd),
                Some(b'"') => {
                    self.push_run(&mut out, run_start)?;
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.push_run(&mut out, run_start)?;
                    out.push(self.escape()?);
                    run_start = self.pos;
                }
                Some(0x00..=0x1f) => return Err(JsonError::ControlChar { offset: self.pos }),
                // Multi-byte UTF-8 sequences hold no byte below 0x80, so
                // stepping one byte at a time never splits on `"` or `\`.
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Copies the plain text from `run_start` up to the reader into `out`.
    fn push_run(&self, out: &mut String, run_start: usize) -> Result<(), JsonError> {
        // Runs always end at an ASCII `"` or `\`, hence on a char boundary.
        let run = self
            .src
            .get(run_start..self.pos)
            .ok_or(JsonError::Syntax { offset: run_start })?;
        out.push_str(run);
        Ok(())
    }

    /// One escape sequence starting at `\`; a high surrogate must be followed
    /// at once by `\u` and a low surrogate, and the pair is combined.
    fn escape(&mut self) -> Result<char, JsonError> {
        let start = self.pos;
        self.pos += 1; // the backslash
        let letter = self.peek().ok_or(JsonError::UnexpectedEnd)?;
        self.pos += 1;
        let c = match letter {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(start)?;
                let code = match unit {
                    0xd800..=0xdbff => {
                        if self.src.as_bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(JsonError::BadEscape { offset: start });
                        }
                        self.pos += 2;
                        let low = self.hex4(start)?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(JsonError::BadEscape { offset: start });
                        }
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    }
                    0xdc00..=0xdfff => return Err(JsonError::BadEscape { offset: start }),
                    _ => unit,
                };
                return char::from_u32(code).ok_or(JsonError::BadEscape { offset: start });
            }
            _ => return Err(JsonError::BadEscape { offset: start }),
        };
        Ok(c)
    }

    /// Four hex digits as a UTF-16 code unit; `BadEscape` at `escape_start` otherwise.
    fn hex4(&mut self, escape_start: usize) -> Result<u32, JsonError> {
        let mut unit = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                None => return Err(JsonError::UnexpectedEnd),
                Some(_) => {
                    return Err(JsonError::BadEscape {
                        offset: escape_start,
                    });
                }
            };
            unit = (unit << 4) | u32::from(digit);
            self.pos += 1;
        }
        Ok(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    fn n(text: &str) -> Value {
        Value::Number(text.to_owned())
    }

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    /// Our tree as a `serde_json` tree (numbers re-read by serde_json, objects last-key-wins).
    fn to_serde(v: &Value) -> serde_json::Value {
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(t) => serde_json::from_str(t).unwrap(),
            Value::String(t) => serde_json::Value::String(t.clone()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(to_serde).collect()),
            Value::Object(members) => {
                let mut map = serde_json::Map::new();
                for (k, v) in members {
                    map.insert(k.clone(), to_serde(v));
                }
                serde_json::Value::Object(map)
            }
        }
    }

    #[test]
    fn parses_rfc_8259_section_13_examples() {
        let image = r#"
            {
              "Image": {
                  "Width":  800,
                  "Height": 600,
                  "Title":  "View from 15th Floor",
                  "Thumbnail": {
                      "Url":    "http://www.example.com/image/481989943",
                      "Height": 125,
                      "Width":  100
                  },
                  "Animated" : false,
                  "IDs": [116, 943, 234, 38793]
                }
            }"#;
        let v = parse(image, 32).unwrap();
        let img = v.get("Image").unwrap();
        assert_eq!(img.get("Width"), Some(&n("800")));
        assert_eq!(img.get("Title"), Some(&s("View from 15th Floor")));
        assert_eq!(img.get("Animated"), Some(&Value::Bool(false)));
        assert_eq!(
            img.get("IDs"),
            Some(&Value::Array(vec![
                n("116"),
                n("943"),
                n("234"),
                n("38793")
            ]))
        );
        assert_eq!(
            img.get("Thumbnail").and_then(|t| t.get("Url")),
            Some(&s("http://www.example.com/image/481989943"))
        );
        assert_eq!(
            to_serde(&v),
            serde_json::from_str::<serde_json::Value>(image).unwrap()
        );

        let places = r#"[
            {"precision": "zip", "Latitude": 37.7668, "Longitude": -122.3959,
             "Address": "", "City": "SAN FRANCISCO", "State": "CA", "Zip": "94107", "Country": "US"},
            {"precision": "zip", "Latitude": 37.371991, "Longitude": -122.026020,
             "Address": "", "City": "SUNNYVALE", "State": "CA", "Zip": "94085", "Country": "US"}
        ]"#;
        let v = parse(places, 32).unwrap();
        assert_eq!(v.as_array().map(<[Value]>::len), Some(2));
        assert_eq!(
            v.as_array().unwrap()[1].get("Longitude"),
            Some(&n("-122.026020"))
        );

        assert_eq!(parse("\"Hello world!\"", 32), Ok(s("Hello world!")));
        assert_eq!(parse("42", 32), Ok(n("42")));
        assert_eq!(parse("true", 32), Ok(Value::Bool(true)));
        assert_eq!(parse(" \t\r\nnull \t\r\n", 32), Ok(Value::Null));
    }

    #[test]
    fn decodes_every_escape() {
        assert_eq!(
            parse(
                r#""\" \\ \/ \b \f \n \r \t \u0041 \u00e9 \u20AC \u0000""#,
                1
            ),
            Ok(s("\" \\ / \u{8} \u{c} \n \r \t A é € \u{0}"))
        );
    }

    #[test]
    fn combines_surrogate_pairs() {
        assert_eq!(parse(r#""\ud83d\ude00""#, 0), Ok(s("😀")));
        assert_eq!(parse(r#""a\uD834\uDD1Eb""#, 0), Ok(s("a𝄞b")));
        assert_eq!(parse(r#""\udbff\udfff""#, 0), Ok(s("\u{10ffff}")));
        assert_eq!(parse(r#""\ud800\udc00""#, 0), Ok(s("\u{10000}")));
    }

    #[test]
    fn rejects_lone_and_mismatched_surrogates() {
        for text in [
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ud83d\n""#,
            r#""\ud83d\u0041""#,
            r#""\ud83d\ud83d""#,
            r#""\ude00""#,
            r#""\ude00\ud83d""#,
        ] {
            assert_eq!(
                parse(text, 0),
                Err(JsonError::BadEscape { offset: 1 }),
                "{text}"
            );
        }
    }

    #[test]
    fn keeps_raw_utf8_in_strings() {
        assert_eq!(parse("\"héllo 世界 😀\"", 0), Ok(s("héllo 世界 😀")));
        assert_eq!(
            parse("{\"ключ\":\"знач\"}", 1).unwrap().get("ключ"),
            Some(&s("знач"))
        );
    }

    #[test]
    fn keeps_numbers_as_source_text() {
        for text in [
            "0",
            "-0",
            "0.5",
            "-12.0e+3",
            "1E-7",
            "1e999999",
            "-4.7220303470537883e+21",
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            assert_eq!(parse(text, 0), Ok(n(text)));
        }
    }

    #[test]
    fn keeps_duplicate_keys_and_gets_the_last() {
        let v = parse(r#"{"a":1,"b":2,"a":3}"#, 1).unwrap();
        assert_eq!(v.get("a"), Some(&n("3")));
        assert_eq!(
            v,
            Value::Object(vec![
                ("a".into(), n("1")),
                ("b".into(), n("2")),
                ("a".into(), n("3")),
            ])
        );
        assert_eq!(v.get("c"), None);
        assert_eq!(n("1").get("a"), None);
    }

    #[test]
    fn parses_nested_and_empty_containers() {
        assert_eq!(
            parse(r#" [ [] , {} , [ { "k" : [ 1 , "x" , null ] } ] ] "#, 4),
            Ok(Value::Array(vec![
                Value::Array(vec![]),
                Value::Object(vec![]),
                Value::Array(vec![Value::Object(vec![(
                    "k".into(),
                    Value::Array(vec![n("1"), s("x"), Value::Null])
                )])]),
            ]))
        );
    }

    #[test]
    fn enforces_max_depth() {
        let nest = |d: usize| format!("{}1{}", "[".repeat(d), "]".repeat(d));
        assert!(parse(&nest(32), 32).is_ok());
        assert_eq!(parse(&nest(33), 32), Err(JsonError::TooDeep { max: 32 }));
        assert_eq!(parse("[[[]]]", 2), Err(JsonError::TooDeep { max: 2 }));
        assert_eq!(
            parse(r#"{"a":{"b":{}}}"#, 2),
            Err(JsonError::TooDeep { max: 2 })
        );
        assert!(parse(r#"{"a":{"b":{}}}"#, 3).is_ok());
        assert_eq!(parse("[]", 0), Err(JsonError::TooDeep { max: 0 }));
        assert_eq!(parse("\"x\"", 0), Ok(s("x")));
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        let deep = "[".repeat(1_000_000);
        assert_eq!(parse(&deep, 32), Err(JsonError::TooDeep { max: 32 }));
        assert_eq!(parse(&deep, usize::MAX), Err(JsonError::UnexpectedEnd));
        let closed = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
        assert!(parse(&closed, usize::MAX).is_ok());
    }

    #[test]
    fn rejects_invalid_texts() {
        use JsonError::*;
        let cases: &[(&str, JsonError)] = &[
            ("", UnexpectedEnd),
            ("   ", UnexpectedEnd),
            ("[1,]", Syntax { offset: 3 }),
            (r#"{"a":1,}"#, Syntax { offset: 7 }),
            ("[,1]", Syntax { offset: 1 }),
            ("[1 2]", Syntax { offset: 3 }),
            ("01", TrailingData { offset: 1 }),
            ("[01]", Syntax { offset: 2 }),
            ("-", UnexpectedEnd),
            ("-a", Syntax { offset: 1 }),
            ("+1", Syntax { offset: 0 }),
            (".5", Syntax { offset: 0 }),
            ("1.", UnexpectedEnd),
            ("1.e5", Syntax { offset: 2 }),
            ("1e", UnexpectedEnd),
            ("1e+", UnexpectedEnd),
            ("0x10", TrailingData { offset: 1 }),
            ("NaN", Syntax { offset: 0 }),
            ("Infinity", Syntax { offset: 0 }),
            ("-Infinity", Syntax { offset: 1 }),
            ("nul", UnexpectedEnd),
            ("tru", UnexpectedEnd),
            ("truex", TrailingData { offset: 4 }),
            ("True", Syntax { offset: 0 }),
            ("nulL", Syntax { offset: 3 }),
            ("// c\n1", Syntax { offset: 0 }),
            ("1 /* c */", TrailingData { offset: 2 }),
            ("1 2", TrailingData { offset: 2 }),
            ("{} x", TrailingData { offset: 3 }),
            ("'a'", Syntax { offset: 0 }),
            (r#"{a:1}"#, Syntax { offset: 1 }),
            (r#"{"a" 1}"#, Syntax { offset: 5 }),
            (r#"{"a":}"#, Syntax { offset: 5 }),
            (r#"{"a":1 "b":2}"#, Syntax { offset: 7 }),
            (r#"{"a":1]"#, Syntax { offset: 6 }),
            ("[1}", Syntax { offset: 2 }),
            ("[", UnexpectedEnd),
            ("{", UnexpectedEnd),
            (r#"{"a""#, UnexpectedEnd),
            (r#""abc"#, UnexpectedEnd),
            ("\"a\u{1}b\"", ControlChar { offset: 2 }),
            ("\"a\nb\"", ControlChar { offset: 2 }),
            ("\"\t\"", ControlChar { offset: 1 }),
            (r#""\x""#, BadEscape { offset: 1 }),
            (r#""\'""#, BadEscape { offset: 1 }),
            (r#""\u12G4""#, BadEscape { offset: 1 }),
            (r#""\u12"#, UnexpectedEnd),
            ("\"\\", UnexpectedEnd),
            ("\u{feff}1", Syntax { offset: 0 }),
            ("\u{a0}1", Syntax { offset: 0 }),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, 32), Err(*want), "{text:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            JsonError::Syntax { offset: 3 }.to_string(),
            "unexpected character at byte 3"
        );
        assert_eq!(
            JsonError::UnexpectedEnd.to_string(),
            "unexpected end of input"
        );
        assert_eq!(
            JsonError::TooDeep { max: 32 }.to_string(),
            "JSON nested deeper than 32"
        );
    }

    #[test]
    fn writes_every_escape() {
        assert_eq!(written(""), r#""""#);
        assert_eq!(written("plain"), r#""plain""#);
        assert_eq!(written("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(written("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(
            written("\u{0}\u{1}\u{1f}\u{b}"),
            r#""\u0000\u0001\u001f\u000b""#
        );
        assert_eq!(
            written("/ \u{7f} é 😀 \u{2028}"),
            "\"/ \u{7f} é 😀 \u{2028}\""
        );
        assert_eq!(written("\"\""), r#""\"\"""#);
    }

    #[test]
    fn write_str_appends_to_existing_output() {
        let mut out = b"{\"k\":".to_vec();
        write_str(&mut out, "v\n");
        assert_eq!(out, b"{\"k\":\"v\\n\"");
    }

    #[test]
    fn writes_every_control_character_so_it_parses_back() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let out = written(&all);
        assert_eq!(parse(&out, 0), Ok(s(&all)));
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), all);
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec![
                    '"',
                    '\\',
                    '/',
                    '\n',
                    '\r',
                    '\t',
                    '\u{0}',
                    '\u{1f}',
                    '\u{7f}',
                    '\u{80}',
                    '\u{9f}',
                    'a',
                    ' ',
                    'é',
                    '\u{2028}',
                    '\u{d7ff}',
                    '\u{e000}',
                    '\u{fffd}',
                    '\u{ffff}',
                    '😀',
                    '\u{10ffff}',
                ]),
                0..24
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            tricky_string().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::vec((tricky_string(), inner), 0..8)
                    .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn write_str_output_parses_back_with_serde_json(text in tricky_string()) {
            let out = written(&text);
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text.clone());
            prop_assert_eq!(parse(&out, 0), Ok(s(&text)));
        }

        #[test]
        fn parses_serde_json_string_serialisation(text in tricky_string()) {
            let encoded = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(parse(&encoded, 0), Ok(s(&text)));
        }

        #[test]
        fn parses_utf16_escapes_of_any_char(c in any::<char>()) {
            let mut units = [0u16; 2];
            let escaped: String = c
                .encode_utf16(&mut units)
                .iter()
                .map(|u| format!("\\u{u:04X}"))
                .collect();
            prop_assert_eq!(parse(&format!("\"{escaped}\""), 0), Ok(s(&c.to_string())));
        }

        #[test]
        fn agrees_with_serde_json_on_values(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let ours = parse(&text, 128).unwrap();
            // Compare with serde_json reading the same text: its float reader
            // may round differently from the value that was written.
            let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(to_serde(&ours), theirs);
        }

        #[test]
        fn accepts_exactly_what_serde_json_accepts(
            tokens in prop::collection::vec(
                prop::sample::select(vec![
                    "[", "]", "{", "}", ",", ":", " ", "\n", "\"", "\\", "\\u", "d83d", "de00",
                    "0041", "n", "0", "01", "1", "-", ".", "5", "e", "E", "+", "true", "false",
                    "null", "nul", "\"a\"", "\"k\":", "\u{1}", "é", "x",
                ]),
                0..40,
            )
        ) {
            let text: String = tokens.concat();
            let ours = parse(&text, 128);
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(theirs) => prop_assert_eq!(to_serde(&ours.unwrap()), theirs),
                // serde_json refuses numbers beyond f64; we keep their text.
                Err(e) if e.to_string().contains("number out of range") => {}
                Err(e) => prop_assert!(ours.is_err(), "{:?} accepted, serde_json: {}", text, e),
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text, 32);
            let _ = parse(&text, 0);
        }
    }
}
