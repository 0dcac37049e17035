//! RFC 6455 WebSocket: handshake, frame codec, close codes, incremental UTF-8 check, session state machine (STUB).
