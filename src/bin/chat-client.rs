//! `chat-client`: the console client for the JSON-lines protocol.
//!
//! ```text
//! chat-client [--host H] [--port P] [--name NAME]
//! ```
//!
//! Two threads: the main thread reads stdin and writes requests; a reader thread
//! decodes server lines and prints them. The main thread learns the outcome of a
//! `join` (accepted, name refused, connection lost) over a channel, so a refused
//! name simply reads the next stdin line as the new name.
//!
//! Everything printed from the network is sanitized first: control characters
//! and bidirectional overrides are replaced, so a peer cannot move the cursor,
//! change colours or rewrite the terminal title. Colours are used only when
//! stdout is a terminal. JSON is read and written with the library's own codec.

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use multiuserchat::proto::json::{self, Value};

/// Before sending `exit`, wait until the server has been silent this long...
const QUIT_QUIET: Duration = Duration::from_millis(300);
/// ...but no longer than this (a busy chat is never silent).
const QUIT_SETTLE_MAX: Duration = Duration::from_millis(1500);
/// After `exit`, how long to wait for the server to close the connection.
const QUIT_GRACE: Duration = Duration::from_millis(800);
/// Longest server line accepted; longer ones are cut and reported.
const MAX_LINE_BYTES: usize = 1 << 20;
/// JSON nesting accepted from the server.
const MAX_JSON_DEPTH: usize = 16;

const HELP: &str = "\
Commands:
  text          send a message to everyone
  @name text    send a private message to name
  /who          list the users online
  /help         show this help
  /quit         leave the chat";

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("usage: chat-client [--host H] [--port P] [--name NAME]\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("chat-client: {e}\nusage: chat-client [--host H] [--port P] [--name NAME]");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = io::stdout().flush();
            eprintln!("chat-client: {e}");
            ExitCode::from(1)
        }
    }
}

struct Options {
    host: String,
    port: u16,
    name: Option<String>,
}

impl Options {
    /// `Ok(None)` for `--help`.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
        let mut o = Options {
            host: "127.0.0.1".into(),
            port: 12345,
            name: None,
        };
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--host" => o.host = value,
                "--port" => o.port = value.parse().map_err(|_| format!("bad port {value:?}"))?,
                "--name" => o.name = Some(value),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(Some(o))
    }
}

/// What the reader thread tells the main thread.
enum Event {
    Joined,
    NameRefused,
    Closed,
}

fn run(opts: Options) -> Result<(), String> {
    let stream = TcpStream::connect((opts.host.as_str(), opts.port))
        .map_err(|e| format!("cannot connect to {}:{}: {e}", opts.host, opts.port))?;
    let _ = stream.set_nodelay(true);
    let reader_stream = stream.try_clone().map_err(|e| format!("socket: {e}"))?;
    let mut writer = stream;

    let style = Style {
        color: io::stdout().is_terminal(),
    };
    let quitting = Arc::new(AtomicBool::new(false));
    let activity = Arc::new(Activity {
        base: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let (tx, rx) = mpsc::channel();
    {
        let quitting = Arc::clone(&quitting);
        let activity = Arc::clone(&activity);
        thread::spawn(move || read_server(reader_stream, style, quitting, activity, tx));
    }

    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut next_line = move || -> Option<String> {
        match lines.next() {
            Some(Ok(l)) => Some(l),
            _ => None,
        }
    };

    let name = join(&mut writer, &rx, opts.name, &mut next_line)?;
    println!(
        "{}",
        style.note(&format!("joined as {name}; /help for commands"))
    );

    loop {
        let Some(line) = next_line() else {
            return quit(&mut writer, &name, &quitting, &activity, &rx);
        };
        let line = line.trim_end_matches('\r');
        match line.trim() {
            "" => continue,
            "/quit" => return quit(&mut writer, &name, &quitting, &activity, &rx),
            "/help" => println!("{HELP}"),
            "/who" => send(&mut writer, "{\"type\":\"who\"}")?,
            cmd if cmd.starts_with('/') => {
                println!(
                    "{}",
                    style.warn(&format!("unknown command {cmd} (try /help)"))
                )
            }
            _ => {
                let req = format!(
                    "{{\"type\":\"message\",\"sender\":{},\"message\":{}}}",
                    json_string(&name),
                    json_string(line)
                );
                send(&mut writer, &req)?;
            }
        }
        if let Ok(Event::Closed) = rx.try_recv() {
            return Err("connection to the server was lost".into());
        }
    }
}

/// Sends `join` until the server accepts a name; returns the accepted name.
fn join(
    writer: &mut TcpStream,
    rx: &Receiver<Event>,
    mut name: Option<String>,
    next_line: &mut impl FnMut() -> Option<String>,
) -> Result<String, String> {
    loop {
        let candidate = match name.take() {
            Some(n) => n,
            None => {
                if io::stdin().is_terminal() {
                    print!("Your name: ");
                    let _ = io::stdout().flush();
                }
                let line = next_line().ok_or("no name given (stdin closed)")?;
                line.trim().to_string()
            }
        };
        if candidate.is_empty() {
            continue;
        }
        let req = format!(
            "{{\"type\":\"join\",\"sender\":{},\"features\":[\"presence\"]}}",
            json_string(&candidate)
        );
        send(writer, &req)?;
        match rx.recv() {
            Ok(Event::Joined) => return Ok(candidate),
            Ok(Event::NameRefused) => continue,
            Ok(Event::Closed) | Err(_) => {
                return Err("connection to the server was lost while joining".into());
            }
        }
    }
}

/// When the reader thread last received a line, for the quiet wait at quit.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// Lets answers to the last requests arrive (the server may drop a queue at
/// `exit`), sends `exit`, waits a moment for the server to close, and closes.
fn quit(
    writer: &mut TcpStream,
    name: &str,
    quitting: &AtomicBool,
    activity: &Activity,
    rx: &Receiver<Event>,
) -> Result<(), String> {
    let settle_until = Instant::now() + QUIT_SETTLE_MAX;
    activity.touch();
    while activity.quiet_for() < QUIT_QUIET && Instant::now() < settle_until {
        if let Ok(Event::Closed) = rx.recv_timeout(Duration::from_millis(50)) {
            return Err("connection to the server was lost".into());
        }
    }
    quitting.store(true, Ordering::SeqCst);
    let req = format!("{{\"type\":\"exit\",\"sender\":{}}}", json_string(name));
    let _ = send(writer, &req);
    let deadline = Instant::now() + QUIT_GRACE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Closed) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => break,
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    let _ = io::stdout().flush();
    Ok(())
}

fn send(writer: &mut TcpStream, json: &str) -> Result<(), String> {
    let mut buf = Vec::with_capacity(json.len() + 1);
    buf.extend_from_slice(json.as_bytes());
    buf.push(b'\n');
    writer
        .write_all(&buf)
        .map_err(|e| format!("connection to the server was lost: {e}"))
}

/// The reader thread: prints every server message; reports join outcomes and EOF.
fn read_server(
    stream: TcpStream,
    style: Style,
    quitting: Arc<AtomicBool>,
    activity: Arc<Activity>,
    tx: Sender<Event>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            break;
        }
        activity.touch();
        if line.last() != Some(&b'\n') && line.len() >= MAX_LINE_BYTES {
            println!("{}", style.warn("(server line too long; cut)"));
            // Skip the rest of the oversized line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let (out, event) = render(text, style);
        if let Some(out) = out {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "{out}");
            let _ = stdout.flush();
        }
        if let Some(ev) = event {
            let _ = tx.send(ev);
        }
    }
    let _ = tx.send(Event::Closed);
    if !quitting.load(Ordering::SeqCst) {
        let _ = io::stdout().flush();
        eprintln!("chat-client: connection to the server was lost");
        std::process::exit(1);
    }
}

/// Formats one server line; the event, if any, is for the main thread.
fn render(line: &str, style: Style) -> (Option<String>, Option<Event>) {
    let obj = match json::parse(line, MAX_JSON_DEPTH) {
        Ok(Value::Object(fields)) => fields,
        _ => return (Some(style.dim(&format!("? {}", sanitize(line)))), None),
    };
    let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let s = |k: &str| match get(k) {
        Some(Value::String(v)) => sanitize(v),
        Some(Value::Number(n)) => sanitize(n),
        _ => String::new(),
    };
    let list = |k: &str| match get(k) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| {
                if let Value::String(s) = v {
                    Some(sanitize(s))
                } else {
                    None
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    let stamp = match s("timestamp") {
        t if t.is_empty() => String::new(),
        t => style.dim(&format!("[{t}] ")),
    };
    let kind = s("type");
    let (body, event) = match kind.as_str() {
        "message" if s("sender") == "Server" => {
            (style.note(&format!("*** {}", s("message"))), None)
        }
        "message" => (
            format!("{}: {}", style.name(&s("sender")), s("message")),
            None,
        ),
        "private" => {
            let who = format!("[private] {}:", s("sender"));
            (format!("{} {}", style.private(&who), s("message")), None)
        }
        "private_sent" => {
            let who = format!("[private to {}]", s("to_user"));
            (format!("{} {}", style.private(&who), s("message")), None)
        }
        "info" => {
            let ev = get("user").map(|_| Event::Joined);
            (style.info(&format!("*** {}", s("message"))), ev)
        }
        "error" => {
            let code = s("code");
            let ev = matches!(code.as_str(), "name_taken" | "name_invalid")
                .then_some(Event::NameRefused);
            let hint = if ev.is_some() {
                " - please choose another name"
            } else {
                ""
            };
            (
                style.warn(&format!("!!! {} ({code}){hint}", s("message"))),
                ev,
            )
        }
        "user_list" => (
            style.info(&format!("*** {} online: {}", s("count"), list("users"))),
            None,
        ),
        "presence" => {
            let mut text = format!("--- {} online", s("count"));
            for (label, key) in [("joined", "joined"), ("left", "left")] {
                let names = list(key);
                if !names.is_empty() {
                    text.push_str(&format!("; {label}: {names}"));
                }
            }
            (style.dim(&text), None)
        }
        other => (style.dim(&format!("({other}) {}", s("message"))), None),
    };
    (Some(format!("{stamp}{body}")), event)
}

/// ANSI styling, or none at all when stdout is not a terminal.
#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    fn name(&self, t: &str) -> String {
        self.paint("1;36", t)
    }
    fn note(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn info(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn private(&self, t: &str) -> String {
        self.paint("1;35", t)
    }
    fn warn(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
}

/// Replaces characters that could drive the terminal: C0/C1 controls (ESC
/// included), DEL, and bidirectional overrides. Tabs become spaces.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => {
                '\u{FFFD}'
            }
            c => c,
        })
        .collect()
}

/// `s` as a JSON string literal (the library's escaping).
fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    json::write_str(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_replaces_escape_sequences() {
        assert_eq!(
            sanitize("a\x1b[2Jb\u{202E}c\u{9b}"),
            "a\u{FFFD}[2Jb\u{FFFD}c\u{FFFD}"
        );
    }

    #[test]
    fn json_string_escapes_quotes_and_controls() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn renders_private_and_refused_name() {
        let style = Style { color: false };
        let (out, _) = render(
            r#"{"type":"private","sender":"bob","message":"hi","timestamp":"12:00:01"}"#,
            style,
        );
        assert_eq!(out.as_deref(), Some("[12:00:01] [private] bob: hi"));
        let (_, ev) = render(
            r#"{"type":"error","code":"name_taken","message":"taken"}"#,
            style,
        );
        assert!(matches!(ev, Some(Event::NameRefused)));
    }
}
