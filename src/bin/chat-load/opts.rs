//! Command-line options of `chat-load`, with their defaults and checks.
//! Knows nothing of sockets beyond resolving and vetting the target addresses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const USAGE: &str = "\
usage: chat-load --addr HOST:PORT[,...] [--ws-addr HOST:PORT[,...]] --proto tcp-json|tcp-text|ws|mix
                 --clients C --senders S --messages M [--rate R] [--duration SECS]
                 [--server-pid PID] [--json] [--timeout SECS] [--idle]
                 [--window W] [--connect-window N] [--ws-path PATH] [--ws-clients N]
                 [--private PCT] [--churn RATE] [--floor] [--rooms N] [--threads T]
                 [--message-bytes N] [--slow-readers N [--slow-rcvbuf BYTES] --stats-addr HOST:PORT]

  --addr            TCP chat port (JSON lines and text mode); loopback only.
                    Repeatable and/or comma-separated (one per node of a
                    cluster): client i connects to address i mod n, churn
                    cycle k to address k mod n; duplicates allowed
  --ws-addr         WebSocket port (needed by ws and mix); loopback only.
                    Several as for --addr: a WebSocket client i connects to
                    WebSocket address i mod m
  --ws-path         request path of the WebSocket handshake (default /)
  --proto           client mix: tcp-json, tcp-text, ws, or mix (50% json, 25% text, 25% ws)
  --ws-clients      with tcp-json or tcp-text: the last N clients use WebSocket instead
  --clients         clients to connect and join
  --senders         the first S clients send
  --messages        messages per sender
  --rate            aggregate messages per second (default: as fast as the window allows)
  --duration        stop sending after SECS
  --window          unacknowledged own messages per sender (default 64)
  --connect-window  connects and joins in flight at once (default 200)
  --idle            shorthand for --senders 1 --messages 1: time for one broadcast to reach all
  --settle-ms       once everyone joined, wait until no client has received
                    anything for MS milliseconds (at most 10 s) before sending,
                    so the load meets quiet connections (default 0)
  --server-pid      report the server's CPU time and peak RSS
  --json            print one JSON object as the last line of stdout
  --timeout         overall limit in seconds (default 120); exceeding it exits non-zero
  --private         PCT (0-100) of each sender's messages go as private messages
                    (`@NAME L ...`, the README's form for text and JSON alike) to
                    another client, round-robin from the sender's right-hand
                    neighbour; needs --clients >= 2. The target must get each once
                    and in order, nobody else may get it, the sender gets the
                    server's confirmation (private_sent / [private to NAME]) in its
                    place among its own broadcasts
  --churn           RATE short-lived extra clients per second during the send phase
                    (at most max(16, RATE), up to 1000, at once), rotating JSON
                    (legacy user lists) / text / WebSocket (with --ws-addr); each
                    joins under a unique name, waits for its welcome, stays 200 ms
                    discarding input, then leaves: one round of kinds with the
                    protocol's exit (then waits for the server to close), the next
                    round by just closing the socket, and so on. No welcome within
                    10 s, a refusal, a close by the server before leaving, or no
                    close within 5 s of the exit is a failed cycle (exit status 1)
  --floor           target is a plain line relay (examples/floor_relay.rs), the
                    benchmark floor: no join or welcome (a client counts as joined
                    once connected), the same tcp-json message lines, which the
                    relay sends back verbatim to everyone, and the same checks.
                    Only with --proto tcp-json, without --ws-clients, --private
                    and --churn
  --rooms           spread the clients over N rooms #load0..#load{N-1}
                    (client i in #load{i mod N}): each joins with the rooms
                    feature, joins its room and waits for room_joined and the
                    replay before the send phase (text mode: /join, its room
                    line); senders send to their room. Every message must reach
                    exactly the clients of its room (the sender included), each
                    once and in order, with the room named on it; reaching
                    anyone else counts as misdelivered. Private messages stay
                    server-wide. Not with --floor
  --threads         T generator threads (default 1), each with its own poll loop:
                    thread t drives the clients i with i mod T = t (senders
                    included) and the checks stay the same, over all clients.
                    For a generator that would otherwise saturate one core.
                    Not with --private, --rooms or --churn
  --message-bytes   pad each message's text to N bytes (16..=1024; default: no
                    padding, about 25 bytes)
  --slow-readers    N extra JSON clients that join after the others, read until
                    their welcome, then never read again (the socket stays open
                    and unregistered). They are not receivers: the checks cover
                    the --clients group only. Needs --stats-addr; sending stops
                    once the server's /stats `dropped_slow_clients` reaches N
                    (or at --duration / --messages), then the run drains as
                    usual. The report gives the time from the first send until
                    all N were dropped. Not with --floor, --rooms or --churn
  --slow-rcvbuf     SO_RCVBUF of each slow reader, set once connected (default
                    4096; the kernel doubles it; 0 keeps the kernel's default)
  --stats-addr      the server's HTTP address (loopback), polled every 100 ms
                    for /stats `dropped_slow_clients` during the run";

/// How clients talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Json,
    Text,
    Ws,
    Mix,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Json => "tcp-json",
            Proto::Text => "tcp-text",
            Proto::Ws => "ws",
            Proto::Mix => "mix",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// TCP chat addresses, at least one; client `i` uses `addrs[i mod n]`.
    pub addrs: Vec<SocketAddr>,
    /// WebSocket addresses, possibly none; WebSocket client `i` uses `ws_addrs[i mod m]`.
    pub ws_addrs: Vec<SocketAddr>,
    pub ws_path: String,
    pub proto: Proto,
    pub clients: usize,
    /// The last `ws_clients` clients speak WebSocket (tcp-json / tcp-text only).
    pub ws_clients: usize,
    pub senders: usize,
    pub messages: u32,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub window: u32,
    pub connect_window: usize,
    pub server_pid: Option<u32>,
    pub json: bool,
    pub timeout: Duration,
    /// Percentage of each sender's messages sent as private messages.
    pub private_pct: u32,
    /// Short-lived clients started per second during the send phase.
    pub churn: Option<f64>,
    /// The target is a plain line relay: no join handshake.
    pub floor: bool,
    /// Rooms the staying clients are spread over; 0 = no rooms (everyone in the lobby).
    pub rooms: usize,
    /// Generator threads, each driving the clients `i` with `i mod threads` = its index.
    pub threads: usize,
    /// Message text padded to this many bytes; 0 = no padding.
    pub message_bytes: usize,
    /// Extra clients that join and then never read.
    pub slow_readers: usize,
    /// SO_RCVBUF of the slow readers; 0 = the kernel's default.
    pub slow_rcvbuf: usize,
    /// Quiet time waited for after everyone joined, before sending.
    pub settle_ms: u64,
    /// The server's HTTP address, polled for `/stats`.
    pub stats_addr: Option<SocketAddr>,
}

/// Most generator threads.
pub const MAX_THREADS: usize = 16;
/// Longest padded message text.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Most (receiver, sender) pairs tracked: 4 bytes each.
const MAX_PAIRS: usize = 64 << 20;

impl Options {
    /// `Ok(None)` for `--help`; `Err` names the offending flag.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
        let mut addrs = Vec::new();
        let mut ws_addrs = Vec::new();
        let mut ws_path = "/".to_string();
        let mut proto = None;
        let (mut clients, mut senders, mut messages) = (None, None, None);
        let mut ws_clients = 0usize;
        let (mut rate, mut duration, mut server_pid) = (None, None, None);
        let (mut window, mut connect_window) = (64u32, 200usize);
        let (mut json, mut idle, mut floor) = (false, false, false);
        let mut timeout = Duration::from_secs(120);
        let (mut private_pct, mut churn) = (0u32, None);
        let mut rooms = 0usize;
        let (mut threads, mut message_bytes) = (1usize, 0usize);
        let (mut slow_readers, mut slow_rcvbuf, mut stats_addr) = (0usize, 4096usize, None);
        let mut settle_ms = 0u64;
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--json" => {
                    json = true;
                    continue;
                }
                "--idle" => {
                    idle = true;
                    continue;
                }
                "--floor" => {
                    floor = true;
                    continue;
                }
                _ => {}
            }
            let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--addr" => addrs.extend(loopback_addrs(&flag, &v)?),
                "--ws-addr" => ws_addrs.extend(loopback_addrs(&flag, &v)?),
                "--ws-path" => {
                    if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        return Err(format!("--ws-path: bad path {v:?}"));
                    }
                    ws_path = v;
                }
                "--proto" => {
                    proto = Some(match v.as_str() {
                        "tcp-json" | "json" => Proto::Json,
                        "tcp-text" | "text" => Proto::Text,
                        "ws" => Proto::Ws,
                        "mix" => Proto::Mix,
                        _ => return Err(format!("--proto: unknown protocol {v:?}")),
                    })
                }
                "--clients" => clients = Some(number::<usize>(&flag, &v)?),
                "--ws-clients" => ws_clients = number::<usize>(&flag, &v)?,
                "--senders" => senders = Some(number::<usize>(&flag, &v)?),
                "--messages" => messages = Some(number::<u32>(&flag, &v)?),
                "--rate" => rate = Some(positive(&flag, &v)?),
                "--duration" => duration = Some(Duration::from_secs_f64(positive(&flag, &v)?)),
                "--timeout" => timeout = Duration::from_secs_f64(positive(&flag, &v)?),
                "--window" => window = number::<u32>(&flag, &v)?.max(1),
                "--connect-window" => connect_window = number::<usize>(&flag, &v)?.max(1),
                "--server-pid" => server_pid = Some(number::<u32>(&flag, &v)?),
                "--private" => {
                    private_pct = number::<u32>(&flag, &v)?;
                    if private_pct > 100 {
                        return Err(format!("--private: {private_pct} is not a percentage"));
                    }
                }
                "--churn" => churn = Some(positive(&flag, &v)?),
                "--rooms" => {
                    rooms = number::<usize>(&flag, &v)?;
                    if rooms == 0 {
                        return Err("--rooms: need at least 1 room".into());
                    }
                }
                "--threads" => {
                    threads = number::<usize>(&flag, &v)?;
                    if !(1..=MAX_THREADS).contains(&threads) {
                        return Err(format!("--threads: between 1 and {MAX_THREADS}"));
                    }
                }
                "--message-bytes" => {
                    message_bytes = number::<usize>(&flag, &v)?;
                    if !(16..=MAX_MESSAGE_BYTES).contains(&message_bytes) {
                        return Err(format!(
                            "--message-bytes: between 16 and {MAX_MESSAGE_BYTES}"
                        ));
                    }
                }
                "--slow-readers" => slow_readers = number::<usize>(&flag, &v)?,
                "--slow-rcvbuf" => slow_rcvbuf = number::<usize>(&flag, &v)?.min(1 << 30),
                "--settle-ms" => settle_ms = number::<u64>(&flag, &v)?.min(10_000),
                "--stats-addr" => stats_addr = Some(loopback_addr(&v)?),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if idle {
            senders = Some(senders.unwrap_or(1));
            messages = Some(messages.unwrap_or(1));
        }
        if addrs.is_empty() {
            return Err("--addr is required".into());
        }
        let proto = proto.unwrap_or(Proto::Json);
        if matches!(proto, Proto::Ws | Proto::Mix) && ws_addrs.is_empty() {
            return Err(format!("--proto {} needs --ws-addr", proto.as_str()));
        }
        let clients = clients.ok_or("--clients is required")?;
        let senders = senders.ok_or("--senders is required")?;
        let messages = messages.ok_or("--messages is required")?;
        if clients == 0 || senders == 0 || senders > clients {
            return Err("need 1 <= --senders <= --clients".into());
        }
        if ws_clients > 0 {
            if !matches!(proto, Proto::Json | Proto::Text) {
                return Err("--ws-clients goes with --proto tcp-json or tcp-text".into());
            }
            if ws_clients > clients {
                return Err("--ws-clients must not exceed --clients".into());
            }
            if ws_addrs.is_empty() {
                return Err("--ws-clients needs --ws-addr".into());
            }
        }
        if private_pct > 0 && clients < 2 {
            return Err(
                "--private needs --clients >= 2 (a private message goes to another client)".into(),
            );
        }
        if floor && (proto != Proto::Json || ws_clients > 0 || private_pct > 0 || churn.is_some()) {
            return Err(
                "--floor goes with --proto tcp-json only (no --ws-clients, --private, --churn)"
                    .into(),
            );
        }
        if rooms > 0 && floor {
            return Err("--rooms does not go with --floor (a plain relay has no rooms)".into());
        }
        if rooms > clients {
            return Err("--rooms must not exceed --clients".into());
        }
        if threads > 1 && (private_pct > 0 || rooms > 0 || churn.is_some()) {
            return Err("--threads goes without --private, --rooms and --churn".into());
        }
        if threads > clients {
            return Err("--threads must not exceed --clients".into());
        }
        if slow_readers > 0 {
            if floor || rooms > 0 || churn.is_some() {
                return Err("--slow-readers does not go with --floor, --rooms or --churn".into());
            }
            if stats_addr.is_none() {
                return Err("--slow-readers needs --stats-addr (the server's HTTP address)".into());
            }
        }
        if clients.checked_mul(senders).is_none_or(|p| p > MAX_PAIRS) {
            return Err(format!("--clients x --senders must stay under {MAX_PAIRS}"));
        }
        Ok(Some(Options {
            addrs,
            ws_addrs,
            ws_path,
            proto,
            clients,
            ws_clients,
            senders,
            messages,
            rate,
            duration,
            window,
            connect_window,
            server_pid,
            json,
            timeout,
            private_pct,
            churn,
            floor,
            rooms,
            threads,
            message_bytes,
            slow_readers,
            slow_rcvbuf,
            settle_ms,
            stats_addr,
        }))
    }
}

impl Options {
    /// The address client `i` (or churn cycle `i`) connects to: TCP address
    /// `i mod n`, or with `ws` WebSocket address `i mod m` (the TCP one when
    /// there is no WebSocket address).
    pub fn target(&self, i: usize, ws: bool) -> Option<SocketAddr> {
        let ws_list = if ws { self.ws_addrs.as_slice() } else { &[] };
        spread(ws_list, i).or_else(|| spread(&self.addrs, i))
    }

    /// Whether more than one TCP or WebSocket address was given (the report then lists them).
    pub fn several_addrs(&self) -> bool {
        self.addrs.len() > 1 || self.ws_addrs.len() > 1
    }
}

/// Entry `i mod len` of `list`, round-robin; `None` for an empty list.
pub fn spread(list: &[SocketAddr], i: usize) -> Option<SocketAddr> {
    list.get(i.checked_rem(list.len())?).copied()
}

/// How many of `clients` (client indexes) each entry of `list` gets under
/// [`spread`], in the order of `list` (a repeated address is listed once per entry).
pub fn tally(
    list: &[SocketAddr],
    clients: impl Iterator<Item = usize>,
) -> Vec<(SocketAddr, usize)> {
    let mut counts: Vec<(SocketAddr, usize)> = list.iter().map(|&a| (a, 0)).collect();
    let n = counts.len();
    for i in clients {
        if let Some(slot) = i.checked_rem(n).and_then(|k| counts.get_mut(k)) {
            slot.1 += 1;
        }
    }
    counts
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: bad number {v:?}"))
}

fn positive(flag: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x < 1e9 => Ok(x),
        _ => Err(format!("{flag}: expected a positive number, got {v:?}")),
    }
}

/// `HOST:PORT[,HOST:PORT...]`: each entry as [`loopback_addr`], in order.
fn loopback_addrs(flag: &str, v: &str) -> Result<Vec<SocketAddr>, String> {
    v.split(',')
        .map(|part| match part.trim() {
            "" => Err(format!("{flag}: empty address in {v:?}")),
            one => loopback_addr(one),
        })
        .collect()
}

/// Resolves `HOST:PORT`; only loopback targets (127.0.0.0/8, ::1) are accepted,
/// so the generator can never be pointed at someone else's server.
fn loopback_addr(v: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = v
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {v:?}: {e}"))?
        .collect();
    let first = addrs
        .first()
        .copied()
        .ok_or_else(|| format!("{v:?} resolves to nothing"))?;
    if addrs.iter().all(|a| a.ip().is_loopback()) {
        Ok(first)
    } else {
        Err(format!(
            "refusing non-loopback target {v} (only 127.0.0.0/8 and ::1)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let r = parse(&[
            "--addr",
            "10.0.0.1:80",
            "--clients",
            "1",
            "--senders",
            "1",
            "--messages",
            "1",
        ]);
        assert!(r.err().is_some_and(|e| e.contains("non-loopback")));
    }

    #[test]
    fn idle_implies_one_sender_one_message() {
        let o = parse(&["--addr", "127.0.0.2:9", "--clients", "5", "--idle"]);
        let o = o.ok().flatten().map(|o| (o.senders, o.messages));
        assert_eq!(o, Some((1, 1)));
    }

    #[test]
    fn settle_defaults_to_none_and_is_capped_at_ten_seconds() {
        let base = ["--addr", "127.0.0.2:9", "--clients", "5", "--idle"];
        let settle = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args).ok().flatten().map(|o| o.settle_ms)
        };
        assert_eq!(settle(&[]), Some(0));
        assert_eq!(settle(&["--settle-ms", "500"]), Some(500));
        assert_eq!(settle(&["--settle-ms", "99999"]), Some(10_000));
        assert_eq!(settle(&["--settle-ms", "x"]), None);
    }

    #[test]
    fn ws_clients_need_a_tcp_proto_and_a_websocket_address() {
        let base = ["--addr", "127.0.0.1:9", "--clients", "10", "--idle"];
        let with = |extra: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert!(with(&["--ws-clients", "3"]).is_err());
        assert!(with(&["--ws-clients", "11", "--ws-addr", "127.0.0.1:8"]).is_err());
        assert!(
            with(&[
                "--ws-clients",
                "3",
                "--ws-addr",
                "127.0.0.1:8",
                "--proto",
                "mix"
            ])
            .is_err()
        );
        let o = with(&["--ws-clients", "3", "--ws-addr", "127.0.0.1:8"]);
        assert_eq!(o.ok().flatten().map(|o| o.ws_clients), Some(3));
    }

    #[test]
    fn private_and_churn_flags() {
        let base = ["--addr", "127.0.0.1:9", "--senders", "1", "--messages", "1"];
        let with = |extra: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        let o = with(&["--clients", "3", "--private", "20", "--churn", "2.5"]);
        let o = o.ok().flatten().map(|o| (o.private_pct, o.churn));
        assert_eq!(o, Some((20, Some(2.5))));
        assert!(with(&["--clients", "3", "--private", "101"]).is_err());
        assert!(with(&["--clients", "1", "--private", "1"]).is_err());
        assert!(with(&["--clients", "1", "--private", "0"]).is_ok());
        assert!(with(&["--clients", "3", "--churn", "0"]).is_err());
        let o = with(&["--clients", "3"]).ok().flatten();
        assert_eq!(o.map(|o| (o.private_pct, o.churn)), Some((0, None)));
    }

    #[test]
    fn floor_only_with_plain_json_clients() {
        let base = [
            "--addr",
            "127.0.0.1:9",
            "--clients",
            "4",
            "--idle",
            "--floor",
        ];
        let with = |extra: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert_eq!(with(&[]).ok().flatten().map(|o| o.floor), Some(true));
        assert!(with(&["--proto", "tcp-json"]).is_ok());
        assert!(with(&["--proto", "tcp-text"]).is_err());
        assert!(with(&["--ws-clients", "1", "--ws-addr", "127.0.0.1:8"]).is_err());
        assert!(with(&["--private", "10"]).is_err());
        assert!(with(&["--churn", "5"]).is_err());
        let o = parse(&["--addr", "127.0.0.1:9", "--clients", "4", "--idle"]);
        assert_eq!(o.ok().flatten().map(|o| o.floor), Some(false));
    }

    #[test]
    fn rooms_flag() {
        let base = ["--addr", "127.0.0.1:9", "--clients", "10", "--idle"];
        let with = |extra: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert_eq!(with(&[]).ok().flatten().map(|o| o.rooms), Some(0));
        assert_eq!(
            with(&["--rooms", "3"]).ok().flatten().map(|o| o.rooms),
            Some(3)
        );
        assert!(with(&["--rooms", "0"]).is_err());
        assert!(with(&["--rooms", "11"]).is_err());
        assert!(with(&["--rooms", "2", "--floor"]).is_err());
    }

    #[test]
    fn threads_slow_readers_and_message_bytes() {
        let base = [
            "--addr",
            "127.0.0.1:9",
            "--clients",
            "10",
            "--senders",
            "2",
            "--messages",
            "5",
        ];
        let with = |extra: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        let o = with(&[]).ok().flatten().expect("defaults");
        assert_eq!(
            (o.threads, o.message_bytes, o.slow_readers, o.slow_rcvbuf),
            (1, 0, 0, 4096)
        );
        assert_eq!(o.stats_addr, None);
        let o = with(&["--threads", "2", "--message-bytes", "64"]);
        let o = o.ok().flatten().expect("two threads");
        assert_eq!((o.threads, o.message_bytes), (2, 64));
        assert!(with(&["--threads", "0"]).is_err());
        assert!(
            with(&["--threads", "11"]).is_err(),
            "more threads than clients"
        );
        assert!(with(&["--threads", "17"]).is_err());
        assert!(with(&["--threads", "2", "--private", "10"]).is_err());
        assert!(with(&["--threads", "2", "--rooms", "2"]).is_err());
        assert!(with(&["--threads", "2", "--churn", "5"]).is_err());
        assert!(with(&["--threads", "2", "--floor"]).is_ok());
        assert!(with(&["--message-bytes", "15"]).is_err());
        assert!(with(&["--message-bytes", "1025"]).is_err());
        // Slow readers need /stats, and no floor, rooms or churn.
        assert!(with(&["--slow-readers", "3"]).is_err());
        let slow = ["--slow-readers", "3", "--stats-addr", "127.0.0.1:8"];
        let o = with(&slow).ok().flatten().expect("slow readers");
        let stats = "127.0.0.1:8".parse::<SocketAddr>().ok();
        assert_eq!((o.slow_readers, o.stats_addr), (3, stats));
        let mut more = slow.to_vec();
        more.extend_from_slice(&["--slow-rcvbuf", "0"]);
        assert_eq!(with(&more).ok().flatten().map(|o| o.slow_rcvbuf), Some(0));
        for bad in [["--floor", ""], ["--rooms", "2"], ["--churn", "1"]] {
            let mut a = slow.to_vec();
            a.extend(bad.iter().filter(|x| !x.is_empty()));
            assert!(with(&a).is_err(), "{bad:?}");
        }
        let far = with(&["--slow-readers", "1", "--stats-addr", "10.0.0.1:80"]);
        assert!(far.err().is_some_and(|e| e.contains("non-loopback")));
    }

    #[test]
    fn several_addresses_repeated_or_comma_separated() {
        let base = ["--clients", "5", "--idle"];
        let with = |extra: &[&str]| {
            let mut a: Vec<&str> = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        let a = |s: &str| s.parse::<SocketAddr>().expect("address");
        let o = with(&["--addr", "127.0.0.1:9"]).ok().flatten();
        let o = o.expect("one address");
        assert_eq!(
            (o.addrs.clone(), o.ws_addrs.clone()),
            (vec![a("127.0.0.1:9")], vec![])
        );
        assert!(!o.several_addrs());
        let o = with(&[
            "--addr",
            "127.0.0.1:9, 127.0.0.2:9",
            "--addr",
            "[::1]:7",
            "--ws-addr",
            "127.0.0.1:8,127.0.0.1:8",
        ]);
        let o = o.ok().flatten().expect("several addresses");
        let want = vec![a("127.0.0.1:9"), a("127.0.0.2:9"), a("[::1]:7")];
        assert_eq!(o.addrs, want);
        assert_eq!(o.ws_addrs, vec![a("127.0.0.1:8"); 2]);
        assert!(o.several_addrs());
        // Every entry must be a loopback address; empty entries are refused.
        let e = with(&["--addr", "127.0.0.1:9,10.0.0.1:80"]).err();
        assert!(e.is_some_and(|e| e.contains("non-loopback")));
        assert!(with(&["--addr", "127.0.0.1:9,"]).is_err());
        assert!(with(&["--addr", ""]).is_err());
        assert!(with(&["--ws-addr", "127.0.0.1:8"]).is_err(), "no --addr");
    }

    #[test]
    fn clients_are_spread_round_robin() {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let list = [a(1), a(2), a(3)];
        let picked: Vec<Option<SocketAddr>> = (0..7).map(|i| spread(&list, i)).collect();
        let want = [1, 2, 3, 1, 2, 3, 1].map(|p| Some(a(p)));
        assert_eq!(picked, want);
        assert_eq!(spread(&[], 4), None);
        assert_eq!(tally(&list, 0..7), vec![(a(1), 3), (a(2), 2), (a(3), 2)]);
        // Only the clients given are counted (e.g. the WebSocket ones 3 and 7).
        assert_eq!(
            tally(&list[..2], [3, 7].into_iter()),
            vec![(a(1), 0), (a(2), 2)]
        );
        assert_eq!(tally(&[], 0..3), vec![]);
        // The same address twice: two entries, half the clients each.
        assert_eq!(tally(&[a(5), a(5)], 0..9), vec![(a(5), 5), (a(5), 4)]);

        let args = [
            "--addr",
            "127.0.0.1:1,127.0.0.1:2",
            "--ws-addr",
            "127.0.0.1:8",
            "--clients",
            "4",
            "--idle",
        ];
        let o = parse(&args).ok().flatten().expect("options");
        assert_eq!(o.target(3, false), Some(a(2)));
        assert_eq!(o.target(3, true), Some(a(8)));
        let o = parse(&args[2..]).err();
        assert!(o.is_some_and(|e| e.contains("--addr")));
        let o = parse(&["--addr", "127.0.0.1:1", "--clients", "2", "--idle"]);
        let o = o.ok().flatten().expect("options");
        // No WebSocket address: the TCP one.
        assert_eq!(o.target(1, true), Some(a(1)));
    }

    #[test]
    fn mix_needs_a_websocket_address() {
        let r = parse(&[
            "--addr",
            "[::1]:9",
            "--proto",
            "mix",
            "--clients",
            "4",
            "--senders",
            "1",
            "--messages",
            "1",
        ]);
        assert!(r.is_err());
    }
}
