//! Request-target → relative file path: percent-decoding and normalisation.
//!
//! Owns: turning an origin-form request-target (RFC 9112 §3.2.1) into a
//! relative path of clean UTF-8 segments that cannot climb out of whatever
//! root the caller joins it to. Must not know about the file system, the
//! embedded asset table or which files exist.
//!
//! Rules, in order:
//! 1. Only origin-form: the target starts with exactly one `/`. Absolute-form
//!    (`http://host/x`), authority-form, `*` and `//host/x` are refused.
//! 2. The query (`?...`) and a fragment (`#...`, never sent by browsers) are
//!    dropped.
//! 3. Each `/`-separated segment is percent-decoded on its own (RFC 3986
//!    §2.1), so an encoded `/` can never create a new segment; it is refused,
//!    as are `\`, NUL and every other control character, raw or encoded.
//! 4. Decoded segments must be UTF-8. Empty and `.` segments are dropped,
//!    `..` is refused wherever it appears, whatever its spelling (`%2e%2e`).
//! 5. A target ending in `/` (or `/.`) names a directory and gets
//!    `index.html` appended.

use std::fmt;

/// Why a request-target names no servable path. [`PathError::status`] gives
/// the answer: 404 for well-formed targets that could only name something
/// outside the tree or inside a name (`..`, an encoded slash: no file here can
/// ever match them), 400 for everything malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form: does not start with `/`, or starts with `//`. → 400
    NotOriginForm,
    /// `%` not followed by two hex digits. → 400
    BadPercentEscape,
    /// The decoded bytes are not UTF-8. → 400
    NotUtf8,
    /// A backslash, NUL or other control character, raw or encoded. → 400
    ForbiddenChar,
    /// `%2F` inside a segment: a slash that is part of a name. → 404
    EncodedSlash,
    /// A `..` segment, raw or encoded. → 404
    ParentSegment,
}

impl PathError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            PathError::EncodedSlash | PathError::ParentSegment => 404,
            PathError::NotOriginForm
            | PathError::BadPercentEscape
            | PathError::NotUtf8
            | PathError::ForbiddenChar => 400,
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "request-target is not origin-form",
            PathError::BadPercentEscape => "invalid percent-escape",
            PathError::NotUtf8 => "decoded path is not UTF-8",
            PathError::ForbiddenChar => "backslash or control character in path",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::ParentSegment => "'..' segment in path",
        })
    }
}

impl std::error::Error for PathError {}

/// The file name served for a directory.
pub const INDEX: &str = "index.html";

/// Normalises a request-target into a relative path with `/` separators.
///
/// `"/a/b.css?x=1"` → `"a/b.css"`, `"/"` → `"index.html"`, `"/dir/"` →
/// `"dir/index.html"`. The result never starts with `/`, never contains an
/// empty, `.` or `..` segment, a backslash or a control character.
/// `Err` for the cases listed on [`PathError`].
pub fn normalize(target: &str) -> Result<String, PathError> {
    // RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ].
    let Some(after_slash) = target.strip_prefix('/') else {
        return Err(PathError::NotOriginForm);
    };
    if after_slash.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();

    let mut out = String::with_capacity(path.len().saturating_add(INDEX.len()));
    let mut is_dir = true;
    for raw in path.split('/') {
        let segment = decode_segment(raw)?;
        match segment.as_str() {
            "" | "." => is_dir = true,
            ".." => return Err(PathError::ParentSegment),
            name => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(name);
                is_dir = false;
            }
        }
    }
    if is_dir {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(INDEX);
    }
    Ok(out)
}

/// Percent-decodes one segment and checks its bytes.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let [first, tail @ ..] = rest {
        let byte = if *first == b'%' {
            let [hi, lo, after @ ..] = tail else {
                return Err(PathError::BadPercentEscape);
            };
            let (Some(hi), Some(lo)) = (hex_value(*hi), hex_value(*lo)) else {
                return Err(PathError::BadPercentEscape);
            };
            rest = after;
            let byte = (hi << 4) | lo;
            if byte == b'/' {
                return Err(PathError::EncodedSlash);
            }
            byte
        } else {
            rest = tail;
            *first
        };
        if byte == b'\\' || byte.is_ascii_control() {
            return Err(PathError::ForbiddenChar);
        }
        bytes.push(byte);
    }
    String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalises_targets() {
        let cases = [
            ("/", "index.html"),
            ("/?x=1", "index.html"),
            ("/index.html", "index.html"),
            ("/a/b.css?x=1", "a/b.css"),
            ("/a/b.css?x=/../..", "a/b.css"),
            ("/a/b.css#frag", "a/b.css"),
            ("/dir/", "dir/index.html"),
            ("/dir/.", "dir/index.html"),
            ("/a/./b", "a/b"),
            ("/a//b", "a/b"),
            ("/a/b//", "a/b/index.html"),
            ("/./", "index.html"),
            ("/%41", "A"),
            ("/%61%62c", "abc"),
            ("/a%20b.txt", "a b.txt"),
            ("/caf%C3%A9", "café"),
            ("/café", "café"),
            ("/...", "..."),
            ("/..a/b..", "..a/b.."),
            ("/.well-known/x", ".well-known/x"),
            ("/http://x", "http:/x"),
        ];
        for (target, want) in cases {
            assert_eq!(normalize(target).as_deref(), Ok(want), "{target}");
        }
    }

    #[test]
    fn rejects_bad_targets() {
        use PathError::*;
        let cases = [
            ("/../etc/passwd", ParentSegment),
            ("/%2e%2e/x", ParentSegment),
            ("/.%2E/x", ParentSegment),
            ("/%2E./x", ParentSegment),
            ("/a/..", ParentSegment),
            ("/a/../../b", ParentSegment),
            ("/a/../b", ParentSegment),
            ("/a/%2fb", EncodedSlash),
            ("/a/%2F..%2F..", EncodedSlash),
            ("/a\\b", ForbiddenChar),
            ("/a%5cb", ForbiddenChar),
            ("/a%5C..%5C..", ForbiddenChar),
            ("/%00", ForbiddenChar),
            ("/a%0d%0aSet-Cookie:x", ForbiddenChar),
            ("/a\u{7f}", ForbiddenChar),
            ("/a%7F", ForbiddenChar),
            ("/a\tb", ForbiddenChar),
            ("//etc", NotOriginForm),
            ("//host/x", NotOriginForm),
            ("http://host/x", NotOriginForm),
            ("*", NotOriginForm),
            ("", NotOriginForm),
            ("index.html", NotOriginForm),
            ("/%zz", BadPercentEscape),
            ("/%4", BadPercentEscape),
            ("/%", BadPercentEscape),
            ("/%%41", BadPercentEscape),
            ("/%C3", NotUtf8),
            ("/%ff", NotUtf8),
        ];
        for (target, want) in cases {
            assert_eq!(normalize(target), Err(want), "{target}");
        }
    }

    #[test]
    fn error_statuses() {
        assert_eq!(PathError::ParentSegment.status(), 404);
        assert_eq!(PathError::EncodedSlash.status(), 404);
        assert_eq!(PathError::NotOriginForm.status(), 400);
        assert_eq!(PathError::BadPercentEscape.status(), 400);
        assert_eq!(PathError::NotUtf8.status(), 400);
        assert_eq!(PathError::ForbiddenChar.status(), 400);
    }

    fn check_output(out: &str) -> Result<(), TestCaseError> {
        prop_assert!(!out.starts_with('/'));
        prop_assert!(!out.is_empty());
        prop_assert!(!out.contains('\\'));
        prop_assert!(!out.chars().any(|c| c.is_ascii_control()));
        for seg in out.split('/') {
            prop_assert!(
                seg != ".." && seg != "." && !seg.is_empty(),
                "segment {seg:?} in {out:?}"
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_output_is_clean(target in any::<String>()) {
            if let Ok(out) = normalize(&target) {
                check_output(&out)?;
            }
        }

        #[test]
        fn normalize_output_is_clean_for_path_like_targets(
            target in "/[a-z./%25ef2E\\\\?]{0,24}",
        ) {
            if let Ok(out) = normalize(&target) {
                check_output(&out)?;
            }
        }

        #[test]
        fn normalize_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let target = String::from_utf8_lossy(&bytes);
            if let Ok(out) = normalize(&target) {
                check_output(&out)?;
            }
        }
    }
}
