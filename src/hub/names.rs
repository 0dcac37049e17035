//! Name rules: what a user may be called and when two names are "the same".
//!
//! - 1 to [`MAX_NAME_CHARS`] Unicode scalar values;
//! - no whitespace and no control characters anywhere;
//! - may not start with `@` (private-message syntax) or `/` (text-mode commands);
//! - `Server` is reserved in any letter case (it signs system messages);
//! - uniqueness is case-insensitive (`Alice` and `alice` are the same user), while the
//!   name is displayed exactly as the user typed it.

use std::fmt;

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// The sender name of system messages; nobody may join under it.
pub const SERVER_NAME: &str = "Server";

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    Whitespace,
    Control,
    LeadingSigil,
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            NameError::Empty => "a name must not be empty",
            NameError::TooLong => "a name may have at most 32 characters",
            NameError::Whitespace => "a name may not contain spaces",
            NameError::Control => "a name may not contain control characters",
            NameError::LeadingSigil => "a name may not start with '@' or '/'",
            NameError::Reserved => "the name 'Server' is reserved",
        };
        f.write_str(why)
    }
}

impl std::error::Error for NameError {}

/// Checks `name` against the rules above.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_whitespace) {
        return Err(NameError::Whitespace);
    }
    // Format characters (zero-width joiners, bidi overrides) count as control here:
    // they make two different names look identical.
    if name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(NameError::Control);
    }
    if name.starts_with('@') || name.starts_with('/') {
        return Err(NameError::LeadingSigil);
    }
    if fold(name) == fold(SERVER_NAME) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// The key two names are compared by: Unicode lowercase.
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        name.to_lowercase()
    }
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["alice", "Bob_2", "Nguyễn", "日本語", "a", &"x".repeat(32)] {
            assert_eq!(validate(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"x".repeat(33)), Err(NameError::TooLong));
        assert_eq!(validate("a b"), Err(NameError::Whitespace));
        assert_eq!(validate("a\tb"), Err(NameError::Whitespace));
        assert_eq!(validate("a\u{7}b"), Err(NameError::Control));
        assert_eq!(validate("a\u{200B}b"), Err(NameError::Control));
        assert_eq!(validate("@bob"), Err(NameError::LeadingSigil));
        assert_eq!(validate("/who"), Err(NameError::LeadingSigil));
        assert_eq!(validate("Server"), Err(NameError::Reserved));
        assert_eq!(validate("sErVeR"), Err(NameError::Reserved));
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(validate(&"ễ".repeat(32)), Ok(()));
        assert_eq!(validate(&"ễ".repeat(33)), Err(NameError::TooLong));
    }

    #[test]
    fn folds_case() {
        assert_eq!(fold("Alice"), fold("aLICE"));
        assert_eq!(fold("ÉLAN"), fold("élan"));
    }
}
