//! `--reuse-port`: two servers on one machine bind the same three ports; a
//! server without it is refused with the usual "already in use" error.

use multiuserchat::config::Config;
use multiuserchat::server::{Server, ServerError};

fn loopback_cfg(reuse_port: bool) -> Config {
    Config {
        host: "127.0.0.1".parse().expect("ip"),
        tcp_port: 0,
        ws_port: 0,
        http_port: 0,
        reuse_port,
        ..Config::default()
    }
}

#[test]
fn two_servers_share_the_ports_with_reuse_port() {
    let first = Server::bind(loopback_cfg(true)).expect("first");
    let a = first.local_addrs().expect("addrs");
    let second = Server::bind(Config {
        tcp_port: a.tcp.port(),
        ws_port: a.ws.port(),
        http_port: a.http.port(),
        ..loopback_cfg(true)
    })
    .expect("second server on the same ports");
    let b = second.local_addrs().expect("addrs");
    assert_eq!((a.tcp, a.ws, a.http), (b.tcp, b.ws, b.http));

    // Without --reuse-port the same port is refused, naming its flag.
    let refused = Server::bind(Config {
        tcp_port: a.tcp.port(),
        ..loopback_cfg(false)
    });
    let Err(e) = refused else {
        panic!("bound a port in use without --reuse-port");
    };
    assert!(e.to_string().contains("already in use"), "{e}");
    match e {
        ServerError::Bind { flag, source, .. } => {
            assert_eq!(flag, "--tcp-port");
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("unexpected error {other}"),
    }
}
