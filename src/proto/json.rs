//! A small JSON reader and writer for the chat protocol (STUB: being written).

use std::fmt;

/// A parsed JSON value. Numbers keep their source text (no precision loss, no overflow).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
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
}

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    Syntax { offset: usize },
    TooDeep { max: usize },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { offset } => write!(f, "invalid JSON at byte {offset}"),
            JsonError::TooDeep { max } => write!(f, "JSON nested deeper than {max}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON text (surrounding whitespace allowed), nesting at most `max_depth`.
pub fn parse(input: &str, max_depth: usize) -> Result<Value, JsonError> {
    let _ = (input, max_depth);
    todo!("json::parse")
}

/// Appends `s` as a quoted, escaped JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = (out, s);
    todo!("json::write_str")
}
