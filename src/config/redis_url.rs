//! The `--redis` URL: `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]` parsed into a
//! [`RedisTarget`], with the password kept out of every printed form
//! (`Display`, `Debug`, and the error value the command line echoes).

use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Redis's own default port, used when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// The environment variable that supplies the password when the URL has none.
pub const PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// Where a node finds Redis, and how it logs in.
///
/// `Display` and `Debug` never show the password: printing a target (banner,
/// logs, `{:?}` of the whole `Config`) is always safe.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// A host name or an IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// The database number `SELECT`ed after connecting (the URL's path).
    pub db: u32,
    /// The ACL user (Redis 6+); `None` logs in as `default` when a password is set.
    pub user: Option<String>,
    pub password: Option<String>,
}

impl RedisTarget {
    /// Parses a URL; a password is only taken from the URL itself.
    pub fn parse(url: &str) -> Result<RedisTarget, &'static str> {
        Self::parse_with_env(url, |_| None)
    }

    /// Parses a URL; when it carries no password, a non-empty `REDIS_PASSWORD`
    /// from `env` (a lookup such as `|k| std::env::var(k).ok()`) supplies it.
    pub fn parse_with_env(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RedisTarget, &'static str> {
        let mut target = parse_url(url)?;
        if target.password.is_none() {
            target.password = env(PASSWORD_ENV).filter(|p| !p.is_empty());
        }
        Ok(target)
    }

    /// `HOST:PORT` (`[HOST]:PORT` for an IPv6 address), for name resolution.
    pub fn addr_string(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The first address `HOST:PORT` resolves to (this may ask DNS and block).
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        self.addr_string().to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            )
        })
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if self.user.is_some() || self.password.is_some() {
            let user = self.user.as_deref().unwrap_or("");
            write!(f, "{}:***@", PercentEncoded(user))?;
        }
        write!(f, "{}/{}", self.addr_string(), self.db)
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `url` as it may be echoed in an error message: everything up to the last
/// `@` (where a password would be) replaced by `***`.
pub fn redacted(url: &str) -> String {
    match url.rfind('@') {
        Some(at) => {
            let scheme_end = url.find("://").map(|i| i + 3).filter(|&i| i <= at);
            let scheme = scheme_end.map_or("", |i| &url[..i]);
            format!("{scheme}***{}", &url[at..])
        }
        None => url.to_owned(),
    }
}

fn parse_url(url: &str) -> Result<RedisTarget, &'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected redis://[USER:PASSWORD@]HOST[:PORT][/DB]");
    };
    if scheme.eq_ignore_ascii_case("rediss") {
        return Err("TLS is not supported (rediss://); use redis:// on a trusted network");
    }
    if !scheme.eq_ignore_ascii_case("redis") {
        return Err("the URL must start with redis://");
    }
    if rest.contains(['?', '#']) {
        return Err("query strings and fragments are not supported");
    }
    // The user part ends at the last `@`, so a password typed with a raw `@`
    // or `/` still works; the path after the host holds only digits anyway.
    let (userinfo, hostpath) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(info) => {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = Some(percent_decode(u)?).filter(|u| !u.is_empty());
            let password = match p {
                Some(p) => Some(percent_decode(p)?).filter(|p| !p.is_empty()),
                None => None,
            };
            (user, password)
        }
        None => (None, None),
    };
    let (hostport, path) = match hostpath.find('/') {
        Some(slash) => (&hostpath[..slash], &hostpath[slash + 1..]),
        None => (hostpath, ""),
    };
    let (host, port) = split_host_port(hostport)?;
    let db = if path.is_empty() {
        0
    } else if path.bytes().all(|b| b.is_ascii_digit()) {
        path.parse()
            .map_err(|_| "the database number is too large")?
    } else {
        return Err("the path must be a database number, e.g. /0");
    };
    Ok(RedisTarget {
        host,
        port,
        db,
        user,
        password,
    })
}

fn split_host_port(hostport: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((ip, after)) = inner.split_once(']') else {
            return Err("an IPv6 address needs its closing ]");
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err("not an IPv6 address between [ and ]");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :PORT after ]")?),
        };
        (ip, port)
    } else {
        match hostport.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. redis://[::1]:6379");
            }
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        return Err("the host may hold only letters, digits, '.', '-' and '_'");
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err("the port must be a number from 1 to 65535"),
            Ok(n) => n,
        },
    };
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    const BAD: &str = "a % in the user or password must be followed by two hex digits";
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BAD)?;
            let hi = hex_value(hex[0]).ok_or(BAD)?;
            let lo = hex_value(hex[1]).ok_or(BAD)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user or password does not decode to UTF-8")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes a user name so that it reads back the same (`@`, `:`, `/`, spaces
/// and control characters escaped).
struct PercentEncoded<'a>(&'a str);

impl fmt::Display for PercentEncoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, db: u32) -> RedisTarget {
        RedisTarget {
            host: host.to_owned(),
            port,
            db,
            user: None,
            password: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_good_urls() {
        let p = |u| RedisTarget::parse_with_env(u, no_env).expect(u);
        assert_eq!(p("redis://127.0.0.1:6380"), target("127.0.0.1", 6380, 0));
        assert_eq!(p("redis://cache.lan"), target("cache.lan", 6379, 0));
        assert_eq!(p("redis://cache.lan/"), target("cache.lan", 6379, 0));
        assert_eq!(p("redis://cache.lan:7000/3"), target("cache.lan", 7000, 3));
        assert_eq!(p("REDIS://Host_1:1/4294967295").db, u32::MAX);
        let full = p("redis://chat:s3cret@10.0.0.5:6379/2");
        assert_eq!(full.user.as_deref(), Some("chat"));
        assert_eq!(full.password.as_deref(), Some("s3cret"));
        assert_eq!(
            (full.host.as_str(), full.port, full.db),
            ("10.0.0.5", 6379, 2)
        );
        // Password only (the `default` user), and user only.
        let pw = p("redis://:pw@h");
        assert_eq!((pw.user, pw.password.as_deref()), (None, Some("pw")));
        let user = p("redis://alice@h");
        assert_eq!((user.user.as_deref(), user.password), (Some("alice"), None));
        let empty = p("redis://:@h");
        assert_eq!((empty.user, empty.password), (None, None));
    }

    #[test]
    fn ipv6_hosts_go_in_brackets() {
        let p = |u| RedisTarget::parse(u).expect(u);
        assert_eq!(p("redis://[::1]:6380"), target("::1", 6380, 0));
        assert_eq!(p("redis://[fe80::1]/5"), target("fe80::1", 6379, 5));
        assert_eq!(p("redis://[::1]:6380").addr_string(), "[::1]:6380");
        assert_eq!(p("redis://[::1]").to_string(), "redis://[::1]:6379/0");
        for bad in [
            "redis://::1:6380",
            "redis://[::1",
            "redis://[nope]:1",
            "redis://[::1]6380",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_decodes_user_and_password() {
        let t = RedisTarget::parse("redis://us%40er:p%40ss%3Aw%2Fd%25@h").expect("parse");
        assert_eq!(t.user.as_deref(), Some("us@er"));
        assert_eq!(t.password.as_deref(), Some("p@ss:w/d%"));
        // Raw `@` and `/` in a password: the user part ends at the last `@`.
        let raw = RedisTarget::parse("redis://:a@b/c@h:1/2").expect("raw");
        assert_eq!(raw.password.as_deref(), Some("a@b/c"));
        assert_eq!((raw.host.as_str(), raw.port, raw.db), ("h", 1, 2));
        let utf8 = RedisTarget::parse("redis://:%C3%A9@h").expect("utf8");
        assert_eq!(utf8.password.as_deref(), Some("é"));
        for bad in [
            "redis://:%4@h",
            "redis://:%zz@h",
            "redis://:%@h",
            "redis://:%FF@h",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_urls() {
        assert_eq!(
            RedisTarget::parse("rediss://h:6380"),
            Err("TLS is not supported (rediss://); use redis:// on a trusted network")
        );
        for bad in [
            "",
            "h:6379",
            "http://h:6379",
            "unix:///tmp/redis.sock",
            "redis://",
            "redis://:6379",
            "redis://user:pw@",
            "redis://h:",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:port",
            "redis://h/x",
            "redis://h/-1",
            "redis://h/4294967296",
            "redis://h/0/1",
            "redis://h/0?timeout=1",
            "redis://h#x",
            "redis://h h",
            "redis://h\n",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let t = RedisTarget::parse("redis://chat:hunter2@10.0.0.5:6379/2").expect("parse");
        assert_eq!(t.to_string(), "redis://chat:***@10.0.0.5:6379/2");
        let debug = format!("{t:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("password: Some(\"***\")"), "{debug}");
        assert!(format!("{t:#?}").contains("\"***\""));

        let pw_only = RedisTarget::parse("redis://:hunter2@h").expect("parse");
        assert_eq!(pw_only.to_string(), "redis://:***@h:6379/0");
        let user_only = RedisTarget::parse("redis://a%40b@h").expect("parse");
        assert_eq!(user_only.to_string(), "redis://a%40b:***@h:6379/0");
        let none = RedisTarget::parse("redis://h:1/9").expect("parse");
        assert_eq!(none.to_string(), "redis://h:1/9");
        assert!(format!("{none:?}").contains("password: None"));

        assert_eq!(redacted("redis://u:hunter2@h:1/x"), "redis://***@h:1/x");
        assert_eq!(redacted("u:hunter2@h"), "***@h");
        assert_eq!(redacted("redis://h:x"), "redis://h:x");
    }

    #[test]
    fn password_falls_back_to_the_environment() {
        let env = |k: &str| (k == PASSWORD_ENV).then(|| "from-env".to_owned());
        let t = RedisTarget::parse_with_env("redis://h", env).expect("parse");
        assert_eq!(t.password.as_deref(), Some("from-env"));
        assert_eq!(t.to_string(), "redis://:***@h:6379/0");
        let u = RedisTarget::parse_with_env("redis://alice@h", env).expect("parse");
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("alice"), Some("from-env"))
        );
        // The URL's own password wins; an empty variable counts as unset.
        let own = RedisTarget::parse_with_env("redis://:mine@h", env).expect("parse");
        assert_eq!(own.password.as_deref(), Some("mine"));
        let empty = RedisTarget::parse_with_env("redis://h", |_| Some(String::new()));
        assert_eq!(empty.expect("parse").password, None);
        // `parse` does not look at the environment.
        assert_eq!(
            RedisTarget::parse("redis://h").expect("parse").password,
            None
        );
    }

    #[test]
    fn resolves_to_the_first_address() {
        let v4 = RedisTarget::parse("redis://127.0.0.1:6390").expect("parse");
        assert_eq!(
            v4.resolve().expect("v4"),
            "127.0.0.1:6390".parse().expect("addr")
        );
        let v6 = RedisTarget::parse("redis://[::1]:6391").expect("parse");
        assert_eq!(
            v6.resolve().expect("v6"),
            "[::1]:6391".parse().expect("addr")
        );
        let name = RedisTarget::parse("redis://localhost:6392").expect("parse");
        assert_eq!(name.resolve().expect("localhost").port(), 6392);
    }
}
