//! Room names: what a room may be called.
//!
//! A room name is `#` followed by 1 to [`MAX_ROOM_NAME_CHARS`] of `a-z`,
//! `0-9`, `_` and `-`. ASCII letters are folded to lower case (`#Toan` is
//! `#toan`); anything else (other scripts, lookalikes, spaces) is refused, so
//! two rooms can never look the same.

/// Longest room name after the `#`, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 32;

/// Longest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 390;

/// The folded room name, or `None` when `name` breaks the rules.
pub fn fold_room(name: &str) -> Option<String> {
    let rest = name.strip_prefix('#')?;
    if rest.is_empty() || rest.len() > MAX_ROOM_NAME_CHARS {
        return None;
    }
    let ok = rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_the_table() {
        let table: &[(&str, Option<&str>)] = &[
            ("#toan", Some("#toan")),
            ("#Toan", Some("#toan")),
            ("#a", Some("#a")),
            ("#class_10-b", Some("#class_10-b")),
            ("#0", Some("#0")),
            (
                &*Box::leak(format!("#{}", "x".repeat(32)).into_boxed_str()),
                Some(&*Box::leak(format!("#{}", "x".repeat(32)).into_boxed_str())),
            ),
            (
                &*Box::leak(format!("#{}", "x".repeat(33)).into_boxed_str()),
                None,
            ),
            ("#", None),
            ("toan", None),
            ("##toan", None),
            ("#to an", None),
            ("#toán", None),
            ("#tоan", None), // Cyrillic о: a lookalike
            ("#to.an", None),
            ("#to/an", None),
            ("", None),
            (" #toan", None),
        ];
        for (input, want) in table {
            assert_eq!(fold_room(input).as_deref(), *want, "{input:?}");
        }
    }
}
