//! Token plan: listeners have fixed tokens below [`FIRST_CONN`]; a connection's
//! token is its slab key plus `FIRST_CONN`.

use mio::Token;

/// First token used for connections.
pub const FIRST_CONN: usize = 16;

/// The stop-signal descriptor's token.
pub const SIGNALS: Token = Token(8);

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token2 {
    /// Listener index (0 chat, 1 WebSocket, 2 HTTP).
    Listener(usize),
    /// Connection slab key.
    Conn(usize),
    /// A stop signal is pending.
    Signals,
}

/// The token of listener `i`.
pub fn listener(i: usize) -> Token {
    Token(i)
}

/// The token of the connection with slab key `key`.
pub fn conn(key: usize) -> Token {
    Token(key + FIRST_CONN)
}

/// Which listener or connection a token belongs to.
pub fn decode(token: Token) -> Token2 {
    if token == SIGNALS {
        Token2::Signals
    } else if token.0 < FIRST_CONN {
        Token2::Listener(token.0)
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
}
