//! WebSocket echo server for the Autobahn|Testsuite: the same poll loop,
//! handshake and frame codec as the chat, with the echo session
//! (`session::ws::EchoSession`) instead of the chat on the WebSocket port:
//! text is echoed as text and binary as binary on any path, with larger
//! limits (16 MiB messages, 65,536 fragments).
//!
//! `cargo run --release --example ws_echo -- [PORT]` (default 0 = any free port);
//! prints `listening on ws://127.0.0.1:PORT/` once bound.

use std::io::Write;
use std::process::ExitCode;

use multiuserchat::config::Config;
use multiuserchat::server::Server;
use multiuserchat::session::WsApp;

fn main() -> ExitCode {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("ws_echo: bad port: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = Config {
        host: "127.0.0.1"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        tcp_port: 0,
        ws_port: port,
        http_port: 0,
        out_hard_limit_bytes: 64 * 1024 * 1024,
        read_budget_bytes: 1024 * 1024,
        ..Config::default()
    };
    let mut server = match Server::bind_with(cfg, WsApp::Echo) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ws_echo: {e}");
            return ExitCode::from(1);
        }
    };
    match server.local_addrs() {
        Ok(a) => {
            println!("listening on ws://{}/", a.ws);
            let _ = std::io::stdout().flush();
        }
        Err(e) => {
            eprintln!("ws_echo: {e}");
            return ExitCode::from(1);
        }
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_echo: {e}");
            ExitCode::from(1)
        }
    }
}
