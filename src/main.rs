//! `multiuserchat`: flags → `Config`, logging, bind every listener, print the
//! banner, run the loop.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use multiuserchat::config::{Command, Config, USAGE};
use multiuserchat::server::{BoundAddrs, Server};

fn main() -> ExitCode {
    let cfg = match Config::from_args(std::env::args().skip(1)) {
        Ok(Command::Run(cfg)) => *cfg,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("multiuserchat {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("multiuserchat: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    if let Some(line) = cluster_line(&cfg) {
        log::info!("{line}");
    }
    // Binding reads the local UTC offset, which must happen while single-threaded.
    let mut server = match Server::bind(cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("multiuserchat: {e}");
            return ExitCode::from(1);
        }
    };
    // Ctrl+C / SIGTERM drain the server instead of killing it mid-write.
    if let Err(e) = server.stop_on_signals() {
        eprintln!(
            "multiuserchat: cannot handle stop signals ({e}); Ctrl+C will stop without a goodbye"
        );
    }
    match server.local_addrs() {
        Ok(addrs) => print_banner(&cfg, &addrs),
        Err(e) => {
            eprintln!("multiuserchat: {e}");
            return ExitCode::from(1);
        }
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multiuserchat: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cfg: &Config) {
    let log_cfg = simplelog::ConfigBuilder::new()
        .set_target_level(simplelog::LevelFilter::Off)
        .set_thread_level(simplelog::LevelFilter::Off)
        .build();
    let _ = simplelog::TermLogger::init(
        cfg.log_level,
        log_cfg,
        simplelog::TerminalMode::Stderr,
        colour_choice(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ),
    );
}

/// Colours only on a terminal: `ColorChoice::Auto` alone looks at `TERM`, not
/// at where stderr goes, so `2>file` and journald got escape codes. A
/// non-empty `NO_COLOR` turns them off everywhere (no-color.org).
fn colour_choice(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> simplelog::ColorChoice {
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    if stderr_is_terminal && !no_color {
        // Auto still honours TERM=dumb.
        simplelog::ColorChoice::Auto
    } else {
        simplelog::ColorChoice::Never
    }
}

fn print_banner(cfg: &Config, a: &BoundAddrs) {
    let mut out = String::new();
    out.push_str(&format!(
        "MultiUserChat {} is running.\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(&format!(
        "  chat (JSON lines / plain text)  tcp://{}\n",
        a.tcp
    ));
    out.push_str(&format!(
        "  WebSocket (any path)            ws://{}/\n",
        a.ws
    ));
    out.push_str(&format!(
        "  web client, /ws, /healthz       http://{}/\n",
        a.http
    ));
    if let Some(line) = cluster_line(cfg) {
        out.push_str(&format!("  {line}\n"));
    }
    if cfg.host.is_unspecified() {
        let lan = lan_addresses();
        if lan.is_empty() {
            out.push_str("No LAN address found; on this machine use 127.0.0.1.\n");
        } else {
            out.push_str("On the LAN, people open one of:\n");
            for ip in &lan {
                out.push_str(&format!(
                    "  http://{}/      (terminal: nc {} {})\n",
                    std::net::SocketAddr::new(*ip, a.http.port()),
                    ip,
                    a.tcp.port()
                ));
            }
        }
        out.push_str(&format!(
            "  this machine: http://127.0.0.1:{}/\n",
            a.http.port()
        ));
    }
    out.push_str("Press Ctrl+C to stop.\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// "cluster: node ID via redis://HOST:PORT/DB" when `--redis` is given. The
/// target's `Display` never shows the password.
fn cluster_line(cfg: &Config) -> Option<String> {
    let redis = cfg.redis.as_ref()?;
    Some(format!("cluster: node {} via {redis}", cfg.node_id))
}

/// This machine's IPv4 addresses other than loopback, from the kernel's routing
/// tables (`/proc/net/fib_trie` marks local addresses `/32 host LOCAL`).
fn lan_addresses() -> Vec<IpAddr> {
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut found: Vec<IpAddr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !found.contains(&IpAddr::V4(ip))
        {
            found.push(IpAddr::V4(ip));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use simplelog::ColorChoice;

    #[test]
    fn cluster_line_names_the_node_and_hides_the_password() {
        let env = |_: &str| None;
        let run = |args: &[&str]| match Config::from_args_with_env(args.iter().copied(), env) {
            Ok(Command::Run(cfg)) => *cfg,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(cluster_line(&run(&[])), None);
        let cfg = run(&[
            "--redis",
            "redis://u:hunter2@10.0.0.5:6380/1",
            "--node-id",
            "a",
        ]);
        assert_eq!(
            cluster_line(&cfg).as_deref(),
            Some("cluster: node a via redis://u:***@10.0.0.5:6380/1")
        );
        let plain = run(&["--redis", "redis://127.0.0.1", "--node-id=node1"]);
        assert_eq!(
            cluster_line(&plain).as_deref(),
            Some("cluster: node node1 via redis://127.0.0.1:6379/0")
        );
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        let on = |tty, v: Option<&str>| colour_choice(tty, v.map(OsStr::new));
        assert_eq!(on(true, None), ColorChoice::Auto);
        assert_eq!(on(false, None), ColorChoice::Never);
        assert_eq!(on(true, Some("1")), ColorChoice::Never);
        assert_eq!(on(false, Some("1")), ColorChoice::Never);
        // An empty NO_COLOR does not count (no-color.org).
        assert_eq!(on(true, Some("")), ColorChoice::Auto);
    }
}
