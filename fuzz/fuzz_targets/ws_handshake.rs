//! `handshake::parse_request` on arbitrary request heads.
//!
//! Input layout: byte 0 picks the policy (header limit, Origin allow-list),
//! the rest is what the client sent.
//!
//! Invariants: a complete request consumed at most the input and at most
//! `max_header_bytes`; "incomplete" only while under the limit; parsing a
//! prefix that ends where the request ended gives the same answer; the 101 and
//! error responses are well-formed HTTP/1.1 heads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::proto::ws::handshake::{self, HandshakeConfig};

fuzz_target!(|data: &[u8]| {
    let [policy, buf @ ..] = data else {
        return;
    };
    let cfg = HandshakeConfig {
        max_header_bytes: if policy & 1 == 0 { 8192 } else { 64 },
        allowed_origins: if policy & 2 == 0 {
            Vec::new()
        } else {
            vec![
                "http://localhost:8080".to_owned(),
                "https://chat.example".to_owned(),
            ]
        },
    };
    match handshake::parse_request(buf, &cfg) {
        Ok(Some((n, req))) => {
            assert!(n <= buf.len() && n <= cfg.max_header_bytes);
            assert_eq!(
                handshake::parse_request(&buf[..n], &cfg),
                Ok(Some((n, req.clone())))
            );
            assert_eq!(handshake::accept_key(&req.key).len(), 28);
            let resp = handshake::response_101(&req);
            assert!(resp.starts_with(b"HTTP/1.1 101 "));
            assert!(resp.ends_with(b"\r\n\r\n"));
        }
        Ok(None) => assert!(buf.len() < cfg.max_header_bytes),
        Err(e) => {
            let status = e.status();
            assert!((400..600).contains(&status));
            let resp = e.response();
            let line = format!("HTTP/1.1 {status} ");
            assert!(resp.starts_with(line.as_bytes()), "{e:?}");
            let _ = e.to_string();
        }
    }
});
