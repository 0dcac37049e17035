//! `request::parse` and `path::normalize` on arbitrary bytes.
//!
//! Input layout: byte 0 picks default or tight limits, the rest is what the
//! client sent.
//!
//! Invariants: a parsed request consumed at most the input, its target is
//! within `max_uri_bytes`, and re-parsing exactly the consumed bytes gives the
//! same request; "incomplete" only under the header limit; every error maps to
//! a 4xx/5xx status. A path from `normalize` is relative, with no empty, `.`
//! or `..` segment, no backslash and no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::proto::http::path;
use multiuserchat::proto::http::request::{self, RequestLimits};

fn check_path(target: &str) {
    match path::normalize(target) {
        Ok(p) => {
            assert!(!p.is_empty() && !p.starts_with('/'), "{p:?}");
            assert!(
                p.split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
                "bad segment in {p:?} from {target:?}"
            );
            assert!(!p.contains('\\'), "backslash in {p:?}");
            assert!(
                !p.chars().any(|c| c.is_ascii_control()),
                "control char in {p:?}"
            );
        }
        Err(e) => assert!(matches!(e.status(), 400 | 404)),
    }
}

fuzz_target!(|data: &[u8]| {
    let [choice, buf @ ..] = data else {
        return;
    };
    let limits = if choice & 1 == 0 {
        RequestLimits::default()
    } else {
        RequestLimits {
            max_header_bytes: 96,
            max_uri_bytes: 24,
            max_headers: 3,
            max_body_bytes: 16,
        }
    };
    if let Ok(text) = std::str::from_utf8(buf) {
        check_path(text);
    }
    match request::parse(buf, &limits) {
        Ok(Some((n, req))) => {
            assert!(n <= buf.len());
            assert!(req.target.len() <= limits.max_uri_bytes);
            assert_eq!(
                request::parse(&buf[..n], &limits),
                Ok(Some((n, req.clone())))
            );
            let _ = req.path();
            let _ = req.is_get_or_head();
            check_path(&req.target);
        }
        // Incomplete: a head still under its limit, or a head waiting for its body.
        Ok(None) => assert!(buf.len() < limits.max_header_bytes + limits.max_body_bytes),
        Err(e) => assert!((400..600).contains(&e.status())),
    }
});
