//! The web client's files, embedded at build time.
//!
//! `build.rs` walks `assets/` and generates `FILES`: one `(path, bytes)` pair
//! per file, the path relative to `assets/` with `/` separators (for example
//! `"index.html"`, `"css/chat.css"`), sorted by path. Dotfiles are left out.
//! This module only holds the table; lookups, MIME types and ETags belong to
//! `static_files`.

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

#[cfg(test)]
mod tests {
    use super::FILES;

    #[test]
    fn table_is_sorted_relative_and_clean() {
        for pair in FILES.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        for (path, _) in FILES {
            assert!(!path.starts_with('/'), "{path}");
            assert!(!path.contains('\\'), "{path}");
            assert!(
                path.split('/')
                    .all(|s| !s.is_empty() && !s.starts_with('.')),
                "{path}"
            );
        }
    }
}
