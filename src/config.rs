//! Every flag, port, limit and timeout in one struct, with its defaults, and the
//! command-line parser that fills it. Units are in the field names.
//! The `--redis` URL has its own parser, in [`redis_url`].

mod redis_url;

pub use redis_url::RedisTarget;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

use crate::hub::HubConfig;
use crate::store::FsyncPolicy;

/// Server configuration. `Config::default()` is what `make run` uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address every listener binds (`0.0.0.0` = all interfaces, for the LAN demo).
    pub host: IpAddr,
    /// JSON-lines / plain-text chat port (0 = any free port).
    pub tcp_port: u16,
    /// WebSocket port, any path (0 = any free port).
    pub ws_port: u16,
    /// HTTP port: the web client, `/ws`, `/healthz`, `/stats` (0 = any free port).
    pub http_port: u16,
    pub log_level: LevelFilter,
    /// Connections over this number are refused right after `accept`.
    pub max_connections: usize,
    /// Open connections allowed from one client address (0 = no limit).
    pub max_per_ip: usize,
    /// Loopback clients (this machine: its own users, load tests) are not
    /// counted against `max_per_ip` (not a flag; tests turn it off).
    pub per_ip_exempt_loopback: bool,
    /// Longest chat line (JSON or text), terminator excluded.
    pub max_line_bytes: usize,
    /// Pending output per connection above which the connection is dropped.
    pub out_hard_limit_bytes: usize,
    /// Largest WebSocket message (after reassembly).
    pub ws_max_message_bytes: usize,
    /// Most fragments per WebSocket message.
    pub ws_max_fragments: usize,
    /// Largest HTTP / WebSocket-handshake header block.
    pub max_header_bytes: usize,
    /// Longest HTTP request-target.
    pub max_uri_bytes: usize,
    /// Time allowed for a WebSocket handshake or an HTTP request.
    pub handshake_timeout: Duration,
    /// Time a client has to join: from connecting on the chat port, from the
    /// handshake on WebSocket. Refused names do not extend it.
    pub first_line_timeout: Duration,
    /// Idle time after which an HTTP keep-alive connection is closed.
    pub http_idle_timeout: Duration,
    /// A WebSocket silent this long is pinged.
    pub ws_ping_interval: Duration,
    /// A pinged WebSocket that stays silent this long is dropped.
    pub ws_pong_timeout: Duration,
    /// Time a closing connection gets to take its last bytes.
    pub linger_timeout: Duration,
    /// Allowed `Origin`s for WebSocket handshakes; empty = any.
    pub allowed_origins: Vec<String>,
    /// Serve the web client from this directory instead of the embedded copy.
    pub assets_dir: Option<PathBuf>,
    /// Bytes read from one connection per loop turn before others get their turn.
    pub read_budget_bytes: usize,
    /// Chat settings.
    pub hub: HubConfig,
    /// Durable room history in this directory (`None`: in memory only).
    pub data_dir: Option<PathBuf>,
    /// When history writes are forced to disk.
    pub fsync: FsyncPolicy,
    /// History older than this is deleted (whole segments).
    pub history_retention: Duration,
    /// History beyond this many bytes is deleted, oldest segments first.
    pub history_max_bytes: u64,
    /// At start-up, cut the history log at a damaged record instead of stopping.
    pub repair_history: bool,
    /// The Redis server that joins several nodes into one chat (`None`: this
    /// node runs alone).
    pub redis: Option<RedisTarget>,
    /// This node's name among the nodes sharing `redis`: 1 to 32 of
    /// `A-Z a-z 0-9 _ -`. Defaults to 8 random hex digits, drawn when the
    /// `Config` is made.
    pub node_id: String,
    /// How long this node's presence in Redis outlives its last refresh.
    pub presence_ttl: Duration,
    /// Listeners set `SO_REUSEADDR` and `SO_REUSEPORT` before binding, so
    /// several nodes on one machine share the ports (the kernel spreads new
    /// connections over them).
    pub reuse_port: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tcp_port: 12345,
            ws_port: 8765,
            http_port: 8000,
            log_level: LevelFilter::Info,
            max_connections: 20_000,
            max_per_ip: 256,
            per_ip_exempt_loopback: true,
            max_line_bytes: 64 * 1024,
            out_hard_limit_bytes: 4 * 1024 * 1024,
            ws_max_message_bytes: 64 * 1024,
            ws_max_fragments: 1024,
            max_header_bytes: 8 * 1024,
            max_uri_bytes: 2048,
            handshake_timeout: Duration::from_secs(10),
            first_line_timeout: Duration::from_secs(60),
            http_idle_timeout: Duration::from_secs(30),
            ws_ping_interval: Duration::from_secs(30),
            ws_pong_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(2),
            allowed_origins: Vec::new(),
            assets_dir: None,
            read_budget_bytes: 256 * 1024,
            hub: HubConfig::default(),
            data_dir: None,
            fsync: FsyncPolicy::EverySec,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            history_max_bytes: 1 << 30,
            repair_history: false,
            redis: None,
            node_id: random_node_id(),
            presence_ttl: Duration::from_secs(60),
            reuse_port: false,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// A command-line mistake, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(String),
    BadValue {
        flag: String,
        value: String,
        why: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "flag {flag} needs a value"),
            ConfigError::BadValue { flag, value, why } => {
                write!(f, "bad value {value:?} for {flag}: {why}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The `--help` text.
pub const USAGE: &str = "\
multiuserchat: a multi-user chat server (TCP JSON lines / plain text, WebSocket, web client)

USAGE: multiuserchat [FLAGS]

  --host ADDR               address to bind every port on [0.0.0.0]
  --tcp-port PORT           JSON-lines / plain-text chat port, 0 = any free [12345]
  --ws-port PORT            WebSocket port (any path), 0 = any free [8765]
  --http-port PORT          web client, /ws, /healthz, /stats; 0 = any free [8000]
  --log-level LEVEL         error|warn|info|debug|trace [info]
  --assets DIR              serve the web client from DIR instead of the built-in copy
  --allow-origin ORIGIN     accept WebSocket handshakes only from this Origin
                            (repeatable; default: any origin)
  --max-connections N       refuse connections beyond N [20000]
  --max-per-ip N            connections from one address, 0 = no limit;
                            loopback clients are not counted [256]
  --max-line-bytes N        longest chat line [65536]
  --max-output-bytes N      pending output per client before it is dropped [4194304]
  --ws-max-message-bytes N  largest WebSocket message [65536]
  --handshake-timeout SECS  to send a first line, handshake or HTTP request [10]
  --first-line-timeout SECS clients must join within SECS (WebSocket: counted
                            from the handshake) [60]
  --http-idle-timeout SECS  keep-alive idle limit [30]
  --ws-ping-interval SECS   ping a silent WebSocket after SECS [30]
  --ws-pong-timeout SECS    drop it when no answer within SECS [30]
  --summary-above N         above N users, join/leave notices and pushed lists
                            become a periodic summary [1000]
  --summary-interval SECS   how often that summary is sent [5]
  --rate-limit N            chat messages per second per user, 0 = off [0]
  --room \"#A,#B\"            rooms that always exist, besides #lobby (repeatable)
  --no-room-create          only #lobby and the --room rooms exist
  --max-rooms N             rooms on the server at once [10000]
  --max-rooms-per-user N    rooms one user may be in at once [20]
  --legacy-replay N         replay the last N lobby messages to clients without
                            the rooms feature when they join [0]
  --data-dir DIR            keep room history in DIR (created if needed; `make run`
                            uses ./data); '' or --no-persist: in memory only [none]
  --no-persist              history in memory only
  --fsync POLICY            always (group commit before anyone sees a message) |
                            everysec (written every turn, synced once a second) |
                            never [everysec]
  --history-days N          delete history older than N days [7]
  --history-max-mb N        delete the oldest history beyond N MiB [1024]
  --repair-history          at start-up, cut the history log at a damaged record
  --redis URL               Redis server of a cluster of nodes,
                            redis://[USER:PASSWORD@]HOST[:PORT][/DB]; without a
                            password there, REDIS_PASSWORD is used [none]
  --node-id ID              this node's name in a cluster: 1 to 32 of A-Z, a-z,
                            0-9, _ and - [8 random hex digits]
  --presence-ttl SECS       how long a killed node's users keep their names (and
                            presence) in Redis after its last refresh, 2 to 3600
                            (cluster mode) [60]
  --reuse-port              bind with SO_REUSEADDR and SO_REUSEPORT, so several
                            nodes on one machine share the same ports
  -h, --help                this text
  -V, --version             the version
";

impl Config {
    /// Parses the arguments after the program name; `REDIS_PASSWORD` comes
    /// from the process environment.
    pub fn from_args<I, S>(args: I) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Config::from_args_with_env(args, |key| std::env::var(key).ok())
    }

    /// Like [`Config::from_args`], with the environment looked up through `env`
    /// (only `REDIS_PASSWORD`, when `--redis` gives no password).
    pub fn from_args_with_env<I, S>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cfg = Config::default();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            if flag == "-h" || flag == "--help" {
                return Ok(Command::Help);
            }
            if flag == "-V" || flag == "--version" {
                return Ok(Command::Version);
            }
            let mut value = || -> Result<String, ConfigError> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => args
                        .next()
                        .ok_or_else(|| ConfigError::MissingValue(flag.clone())),
                }
            };
            match flag.as_str() {
                "--host" => cfg.host = parse(&flag, &value()?, "not an IP address")?,
                "--tcp-port" => cfg.tcp_port = parse(&flag, &value()?, "not a port number")?,
                "--ws-port" => cfg.ws_port = parse(&flag, &value()?, "not a port number")?,
                "--http-port" => cfg.http_port = parse(&flag, &value()?, "not a port number")?,
                "--log-level" => {
                    cfg.log_level = parse(&flag, &value()?, "use error|warn|info|debug|trace")?
                }
                "--assets" => cfg.assets_dir = Some(PathBuf::from(value()?)),
                "--allow-origin" => cfg.allowed_origins.push(value()?),
                "--max-connections" => cfg.max_connections = positive(&flag, &value()?)?,
                "--max-per-ip" => cfg.max_per_ip = parse(&flag, &value()?, "not a number")?,
                "--max-line-bytes" => cfg.max_line_bytes = positive(&flag, &value()?)?,
                "--max-output-bytes" => cfg.out_hard_limit_bytes = positive(&flag, &value()?)?,
                "--ws-max-message-bytes" => cfg.ws_max_message_bytes = positive(&flag, &value()?)?,
                "--handshake-timeout" => cfg.handshake_timeout = secs(&flag, &value()?)?,
                "--first-line-timeout" => cfg.first_line_timeout = secs(&flag, &value()?)?,
                "--http-idle-timeout" => cfg.http_idle_timeout = secs(&flag, &value()?)?,
                "--ws-ping-interval" => cfg.ws_ping_interval = secs(&flag, &value()?)?,
                "--ws-pong-timeout" => cfg.ws_pong_timeout = secs(&flag, &value()?)?,
                "--summary-above" => {
                    cfg.hub.summary_above_users = parse(&flag, &value()?, "not a number")?
                }
                "--summary-interval" => cfg.hub.summary_interval = secs(&flag, &value()?)?,
                "--rate-limit" => {
                    cfg.hub.rate_limit_per_sec = parse(&flag, &value()?, "not a number")?
                }
                "--room" => {
                    let v = value()?;
                    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let Some(folded) = crate::hub::room_names::fold_room(name) else {
                            return Err(ConfigError::BadValue {
                                flag: flag.clone(),
                                value: name.to_owned(),
                                why: "a room name is # followed by 1 to 32 of a-z, 0-9, _ and -",
                            });
                        };
                        if !cfg.hub.permanent_rooms.contains(&folded) {
                            cfg.hub.permanent_rooms.push(folded);
                        }
                    }
                }
                "--no-room-create" => cfg.hub.room_create = false,
                "--max-rooms" => cfg.hub.max_rooms = positive(&flag, &value()?)?,
                "--max-rooms-per-user" => cfg.hub.max_rooms_per_user = positive(&flag, &value()?)?,
                "--data-dir" => {
                    let v = value()?;
                    cfg.data_dir = (!v.is_empty()).then(|| PathBuf::from(v));
                }
                "--no-persist" => cfg.data_dir = None,
                "--fsync" => {
                    let v = value()?;
                    cfg.fsync = v.parse().map_err(|_| ConfigError::BadValue {
                        flag: flag.clone(),
                        value: v.clone(),
                        why: "use always, everysec or never",
                    })?;
                }
                "--history-days" => {
                    let days: f64 = parse(&flag, &value()?, "not a number of days")?;
                    if !(days > 0.0 && days < 100_000.0) {
                        return Err(ConfigError::BadValue {
                            flag: flag.clone(),
                            value: days.to_string(),
                            why: "must be more than 0 days",
                        });
                    }
                    cfg.history_retention = Duration::from_secs_f64(days * 86_400.0);
                }
                "--history-max-mb" => {
                    cfg.history_max_bytes = (positive(&flag, &value()?)? as u64) << 20;
                }
                "--repair-history" => cfg.repair_history = true,
                "--legacy-replay" => {
                    cfg.hub.legacy_replay = parse(&flag, &value()?, "not a number")?
                }
                "--redis" => {
                    let v = value()?;
                    let target = RedisTarget::parse_with_env(&v, &env).map_err(|why| {
                        ConfigError::BadValue {
                            flag: flag.clone(),
                            value: redis_url::redacted(&v),
                            why,
                        }
                    })?;
                    cfg.redis = Some(target);
                }
                "--node-id" => {
                    let v = value()?;
                    if !valid_node_id(&v) {
                        return Err(ConfigError::BadValue {
                            flag: flag.clone(),
                            value: v,
                            why: "a node id is 1 to 32 of A-Z, a-z, 0-9, _ and -",
                        });
                    }
                    cfg.node_id = v;
                }
                "--presence-ttl" => {
                    let v = value()?;
                    let why = "a whole number of seconds from 2 to 3600";
                    match parse::<u64>(&flag, &v, why)? {
                        n @ 2..=3600 => cfg.presence_ttl = Duration::from_secs(n),
                        _ => {
                            return Err(ConfigError::BadValue {
                                flag: flag.clone(),
                                value: v,
                                why,
                            });
                        }
                    }
                }
                "--reuse-port" => cfg.reuse_port = true,
                _ => return Err(ConfigError::UnknownFlag(arg)),
            }
        }
        Ok(Command::Run(Box::new(cfg)))
    }
}

fn parse<T: FromStr>(flag: &str, value: &str, why: &'static str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadValue {
        flag: flag.to_owned(),
        value: value.to_owned(),
        why,
    })
}

/// 1 to 32 of `A-Z a-z 0-9 _ -`: safe in Redis keys, channel names and logs.
fn valid_node_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 8 hex digits from `/dev/urandom`; if that cannot be read, from the clock and
/// the process id (distinct enough for nodes started apart or on other hosts).
fn random_node_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    let n = if from_kernel {
        u32::from_ne_bytes(bytes)
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        (nanos as u32) ^ ((nanos >> 32) as u32) ^ std::process::id().rotate_left(16)
    };
    format!("{n:08x}")
}

fn positive(flag: &str, value: &str) -> Result<usize, ConfigError> {
    match parse::<usize>(flag, value, "not a positive number")? {
        0 => Err(ConfigError::BadValue {
            flag: flag.to_owned(),
            value: value.to_owned(),
            why: "must be at least 1",
        }),
        n => Ok(n),
    }
}

fn secs(flag: &str, value: &str) -> Result<Duration, ConfigError> {
    let s: f64 = parse(flag, value, "not a number of seconds")?;
    if !(s > 0.0 && s < 1.0e6) {
        return Err(ConfigError::BadValue {
            flag: flag.to_owned(),
            value: value.to_owned(),
            why: "must be between 0 and 1000000 seconds",
        });
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args` with an empty environment (a `REDIS_PASSWORD` set where
    /// the tests run must not change their outcome).
    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        run_env(args, |_| None)
    }

    fn run_env(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        match Config::from_args_with_env(args.iter().copied(), env)? {
            Command::Run(c) => Ok(*c),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = run(&[]).unwrap();
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!((c.tcp_port, c.ws_port, c.http_port), (12345, 8765, 8000));
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.max_line_bytes, 65536);
        assert_eq!(c.out_hard_limit_bytes, 4 << 20);
    }

    #[test]
    fn parses_history_flags() {
        let c = run(&[
            "--data-dir",
            "/tmp/x",
            "--fsync=always",
            "--history-days",
            "2",
            "--history-max-mb",
            "10",
            "--repair-history",
        ])
        .unwrap();
        assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(c.history_retention, Duration::from_secs(2 * 86_400));
        assert_eq!(c.history_max_bytes, 10 << 20);
        assert!(c.repair_history);
        assert_eq!(run(&["--data-dir", ""]).unwrap().data_dir, None);
        assert_eq!(
            run(&["--data-dir", "d", "--no-persist"]).unwrap().data_dir,
            None
        );
        assert!(run(&["--fsync", "sometimes"]).is_err());
        assert_eq!(Config::default().fsync, FsyncPolicy::EverySec);
    }

    #[test]
    fn parses_room_flags() {
        let c = run(&[
            "--room",
            "#Math, #art",
            "--room=#math",
            "--no-room-create",
            "--max-rooms",
            "5",
            "--max-rooms-per-user=2",
            "--legacy-replay",
            "10",
        ])
        .unwrap();
        assert_eq!(c.hub.permanent_rooms, vec!["#math", "#art"]);
        assert!(!c.hub.room_create);
        assert_eq!((c.hub.max_rooms, c.hub.max_rooms_per_user), (5, 2));
        assert_eq!(c.hub.legacy_replay, 10);
        assert!(run(&["--room", "math"]).is_err());
        assert!(run(&["--room", "#toán"]).is_err());
        assert!(run(&["--max-rooms", "0"]).is_err());
    }

    #[test]
    fn parses_flags_both_ways() {
        let c = run(&[
            "--host",
            "127.0.0.1",
            "--tcp-port=0",
            "--ws-port",
            "0",
            "--log-level",
            "debug",
            "--allow-origin",
            "http://a",
            "--summary-interval",
            "0.5",
            "--max-per-ip=0",
        ])
        .unwrap();
        assert_eq!(c.max_per_ip, 0);
        assert_eq!(Config::default().max_per_ip, 256);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!((c.tcp_port, c.ws_port), (0, 0));
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.allowed_origins, vec!["http://a".to_owned()]);
        assert_eq!(c.hub.summary_interval, Duration::from_millis(500));
    }

    #[test]
    fn parses_cluster_flags() {
        let c = run(&[
            "--redis",
            "redis://10.0.0.5:6380/2",
            "--node-id=node-1_A",
            "--presence-ttl",
            "2",
            "--reuse-port",
        ])
        .unwrap();
        let redis = c.redis.expect("redis");
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.db),
            ("10.0.0.5", 6380, 2)
        );
        assert_eq!(c.node_id, "node-1_A");
        assert_eq!(c.presence_ttl, Duration::from_secs(2));
        assert!(c.reuse_port);
        assert_eq!(
            run(&["--presence-ttl=3600"]).unwrap().presence_ttl,
            Duration::from_secs(3600)
        );
        assert_eq!(
            run(&["--node-id", &"x".repeat(32)]).unwrap().node_id.len(),
            32
        );
        assert_eq!(
            run(&["--redis=redis://[::1]"])
                .unwrap()
                .redis
                .expect("v6")
                .addr_string(),
            "[::1]:6379"
        );
    }

    #[test]
    fn cluster_defaults() {
        let c = run(&[]).unwrap();
        assert!(c.redis.is_none());
        assert!(!c.reuse_port);
        assert_eq!(c.presence_ttl, Duration::from_secs(60));
        assert_eq!(c.node_id.len(), 8);
        assert!(c.node_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(valid_node_id(&c.node_id));
        // Drawn per Config: two nodes started with defaults get different ids
        // (a 1 in 2^32 chance of a false failure, drawn three times).
        let ids: Vec<String> = (0..3).map(|_| Config::default().node_id).collect();
        assert!(ids.iter().any(|id| *id != ids[0]), "{ids:?}");
    }

    #[test]
    fn refuses_bad_cluster_flags() {
        for args in [
            &["--node-id", ""][..],
            &["--node-id", &"x".repeat(33)],
            &["--node-id", "a.b"],
            &["--node-id", "nœud"],
            &["--node-id", "a b"],
            &["--presence-ttl", "1"],
            &["--presence-ttl", "0"],
            &["--presence-ttl", "3601"],
            &["--presence-ttl", "2.5"],
            &["--presence-ttl", "-5"],
            &["--redis", "http://h"],
            &["--redis", "redis://h:0"],
        ] {
            assert!(
                matches!(run(args), Err(ConfigError::BadValue { .. })),
                "{args:?}"
            );
        }
        assert!(matches!(
            run(&["--redis"]),
            Err(ConfigError::MissingValue(_))
        ));
        let tls = run(&["--redis", "rediss://h:6380"])
            .unwrap_err()
            .to_string();
        assert!(tls.contains("TLS is not supported"), "{tls}");
    }

    #[test]
    fn redis_errors_do_not_echo_the_password() {
        for url in [
            "redis://u:hunter2@h:0",
            "rediss://:hunter2@h",
            "redis://:hunter2@h/x",
            "redis://:hunter2%zz@h",
        ] {
            let e = run(&["--redis", url]).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***@h"), "{shown}");
        }
    }

    #[test]
    fn redis_password_from_the_environment() {
        let env = |k: &str| (k == "REDIS_PASSWORD").then(|| "hunter2".to_owned());
        let c = run_env(&["--redis", "redis://h"], env).unwrap();
        let redis = c.redis.expect("redis");
        assert_eq!(redis.password.as_deref(), Some("hunter2"));
        assert_eq!(redis.to_string(), "redis://:***@h:6379/0");
        // The URL's password wins; without --redis the variable is not read.
        let own = run_env(&["--redis", "redis://:mine@h"], env).unwrap();
        assert_eq!(own.redis.expect("redis").password.as_deref(), Some("mine"));
        let read = std::cell::Cell::new(false);
        run_env(&[], |_| {
            read.set(true);
            None
        })
        .unwrap();
        assert!(!read.get());
        // The whole Config's Debug goes through RedisTarget's redacting Debug.
        let whole = run_env(&["--redis", "redis://u@h"], env).unwrap();
        assert!(!format!("{whole:?}").contains("hunter2"));
    }

    #[test]
    fn reports_mistakes() {
        assert!(matches!(
            run(&["--bogus"]),
            Err(ConfigError::UnknownFlag(_))
        ));
        assert!(matches!(
            run(&["--tcp-port"]),
            Err(ConfigError::MissingValue(_))
        ));
        assert!(matches!(
            run(&["--tcp-port", "70000"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            run(&["--max-line-bytes", "0"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(Config::from_args(["--help"]), Ok(Command::Help)));
    }
}
