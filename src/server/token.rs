//! Token plan: listeners have fixed tokens below [`SIGNALS`], outbound links
//! the range between [`SIGNALS`] and [`FIRST_CONN`]; a connection's token is its
//! slab key plus `FIRST_CONN`.
//!
//! ```text
//! 0..=7   listeners (0 chat, 1 WebSocket, 2 HTTP)
//! 8       stop signals
//! 9..=15  outbound links (not clients: never counted, swept or reported to the hub)
//! 16..    connections
//! ```

use mio::Token;

/// First token used for connections.
pub const FIRST_CONN: usize = 16;

/// The stop-signal descriptor's token.
pub const SIGNALS: Token = Token(8);

/// Token of outbound link 0.
const FIRST_LINK: usize = SIGNALS.0 + 1;

/// How many outbound links have a token.
pub const MAX_LINKS: usize = FIRST_CONN - FIRST_LINK;

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token2 {
    /// Listener index (0 chat, 1 WebSocket, 2 HTTP).
    Listener(usize),
    /// Connection slab key.
    Conn(usize),
    /// A stop signal is pending.
    Signals,
    /// Outbound link index, below [`MAX_LINKS`].
    Link(usize),
}

/// The token of listener `i`.
pub fn listener(i: usize) -> Token {
    Token(i)
}

/// The token of the connection with slab key `key`.
pub fn conn(key: usize) -> Token {
    Token(key + FIRST_CONN)
}

/// The token of outbound link `i`; `None` unless `i` is below [`MAX_LINKS`].
pub fn link(i: usize) -> Option<Token> {
    (i < MAX_LINKS).then_some(Token(FIRST_LINK + i))
}

/// Which listener, link or connection a token belongs to.
pub fn decode(token: Token) -> Token2 {
    if token == SIGNALS {
        Token2::Signals
    } else if token.0 < SIGNALS.0 {
        Token2::Listener(token.0)
    } else if token.0 < FIRST_CONN {
        Token2::Link(token.0 - FIRST_LINK)
    } else {
        Token2::Conn(token.0 - FIRST_CONN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(decode(listener(2)), Token2::Listener(2));
        assert_eq!(decode(conn(0)), Token2::Conn(0));
        assert_eq!(decode(conn(12345)), Token2::Conn(12345));
        assert_eq!(decode(SIGNALS), Token2::Signals);
    }

    #[test]
    fn links_round_trip_between_signals_and_connections() {
        assert_eq!(MAX_LINKS, 7);
        for i in 0..MAX_LINKS {
            let Some(t) = link(i) else {
                panic!("link {i} has no token");
            };
            assert!(t.0 > SIGNALS.0 && t.0 < FIRST_CONN, "{t:?}");
            assert_eq!(decode(t), Token2::Link(i));
        }
        assert_eq!(link(0), Some(Token(9)));
        assert_eq!(link(MAX_LINKS - 1), Some(Token(15)));
        assert_eq!(link(MAX_LINKS), None);
    }

    #[test]
    fn link_tokens_collide_with_nothing_else() {
        for i in 0..MAX_LINKS {
            let t = link(i);
            assert_ne!(t, Some(SIGNALS));
            assert_ne!(t, Some(conn(0)));
            for l in 0..3 {
                assert_ne!(t, Some(listener(l)));
            }
        }
        assert_eq!(decode(Token(FIRST_CONN - 1)), Token2::Link(MAX_LINKS - 1));
        assert_eq!(decode(Token(SIGNALS.0 - 1)), Token2::Listener(7));
    }
}
