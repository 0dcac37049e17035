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
//!
//! Rooms: the client joins with the `rooms` feature, so it starts in `#lobby`.
//! `/join #room` makes that room the current one (plain lines go there),
//! `/part` leaves it (the previously joined room becomes current again). The
//! room state lives in the main thread, fed by the reader thread's events; a
//! `/join` or `/part` waits briefly for the server's answer so the next line
//! already goes to the right room. Lines of rooms other than `#lobby` show the
//! room before the time (`[#toan 10:01:02] an: hi`); lobby lines look as they
//! always did; replayed lines are marked `(history)`.

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
/// How long `/join` and `/part` wait for the server's answer before the next line.
const ROOM_ANSWER_WAIT: Duration = Duration::from_secs(3);
/// The room everyone starts in.
const LOBBY: &str = "#lobby";

const HELP: &str = "\
Commands:
  text            send a message to the current room (#lobby at first)
  @name text      send a private message to name (/msg name text too)
  //text          send a message that starts with /
  /join #room     join a room (created if new); it becomes the current room
  /part [#room]   leave a room (default: the current one)
  /rooms          list the rooms
  /topic [text]   show or set the current room's topic
  /history [n]    show the current room's last n messages
  /who            list the users of the current room
  /help           show this help
  /quit           leave the chat";

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
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Joined,
    NameRefused,
    /// `room_joined` for this room (the server's spelling).
    RoomJoined(String),
    /// `room_left` for this room.
    RoomLeft(String),
    /// A `room_join` was refused (`room_invalid`, `room_limit`).
    RoomRefused,
    /// `not_in_room`: a `/part` (or anything else) named a room we are not in.
    NotInRoom,
    /// A `history` answer for this room; `empty` when it carried no message.
    History {
        room: String,
        empty: bool,
    },
    Closed,
}

/// The rooms this client is in, as the main thread knows them: the current
/// room is where plain lines go (the latest joined room still joined).
#[derive(Debug)]
struct Rooms {
    joined: Vec<String>,
    current: String,
}

impl Rooms {
    fn new() -> Rooms {
        Rooms {
            joined: Vec::new(),
            current: LOBBY.to_string(),
        }
    }

    /// Applies a room event; returns the current room when it changed.
    fn apply(&mut self, ev: &Event) -> Option<&str> {
        let before = self.current.clone();
        match ev {
            Event::RoomJoined(room) => {
                self.joined.retain(|r| r != room);
                self.joined.push(room.clone());
                self.current = room.clone();
            }
            Event::RoomLeft(room) => {
                self.joined.retain(|r| r != room);
                if self.current == *room {
                    self.current = self.joined.last().cloned().unwrap_or_else(|| LOBBY.into());
                }
            }
            _ => {}
        }
        (self.current != before).then_some(self.current.as_str())
    }
}

/// One line typed by the user.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Empty,
    /// Chat text for the current room (`@name text` included: the server
    /// turns it into a private message).
    Say(String),
    Join(String),
    Part(Option<&'a str>),
    Rooms,
    Topic(Option<&'a str>),
    History(Option<u32>),
    Who,
    Help,
    Quit,
    /// Wrong use of a known command: the usage line.
    Usage(&'static str),
    Unknown(&'a str),
}

/// Parses one stdin line (without its line end).
fn parse_command(line: &str) -> Command<'_> {
    if line.trim().is_empty() {
        return Command::Empty;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Command::Say(format!("/{rest}"));
    }
    let Some(cmd) = line.trim().strip_prefix('/') else {
        return Command::Say(line.to_string());
    };
    let (word, arg) = match cmd.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (cmd, ""),
    };
    let arg = (!arg.is_empty()).then_some(arg);
    match (word, arg) {
        ("quit" | "exit", _) => Command::Quit,
        ("help", _) => Command::Help,
        ("who", _) => Command::Who,
        ("rooms" | "list", _) => Command::Rooms,
        ("join", Some(room)) if !room.contains(char::is_whitespace) => {
            Command::Join(if room.starts_with('#') {
                room.to_string()
            } else {
                format!("#{room}")
            })
        }
        ("join", _) => Command::Usage("usage: /join #ROOM"),
        ("part" | "leave", None) => Command::Part(None),
        ("part" | "leave", Some(room)) if room.starts_with('#') => Command::Part(Some(room)),
        ("part" | "leave", Some(_)) => Command::Usage("usage: /part [#ROOM]"),
        ("topic", arg) => Command::Topic(arg),
        ("history", None) => Command::History(None),
        ("history", Some(n)) => match n.parse::<u32>() {
            Ok(n) if n > 0 => Command::History(Some(n)),
            _ => Command::Usage("usage: /history [COUNT]"),
        },
        ("msg", Some(rest)) => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => {
                Command::Say(format!("@{to} {}", text.trim_start()))
            }
            _ => Command::Usage("usage: /msg NAME TEXT"),
        },
        ("msg", None) => Command::Usage("usage: /msg NAME TEXT"),
        _ => Command::Unknown(line.trim()),
    }
}

/// The JSON request for a command, if it sends one; `current` is the current room.
fn request(cmd: &Command<'_>, name: &str, current: &str) -> Option<String> {
    let room_field = |room: &str| format!(",\"room\":{}", json_string(room));
    // Lobby lines keep the original form, so they work on any server.
    let current_field = if current == LOBBY {
        String::new()
    } else {
        room_field(current)
    };
    Some(match cmd {
        Command::Say(text) => format!(
            "{{\"type\":\"message\",\"sender\":{},\"message\":{}{current_field}}}",
            json_string(name),
            json_string(text)
        ),
        Command::Join(room) => format!("{{\"type\":\"room_join\"{}}}", room_field(room)),
        Command::Part(room) => format!(
            "{{\"type\":\"room_leave\"{}}}",
            room_field(room.unwrap_or(current))
        ),
        Command::Rooms => "{\"type\":\"rooms\"}".to_string(),
        Command::Topic(topic) => {
            let topic = topic.map_or(String::new(), |t| format!(",\"topic\":{}", json_string(t)));
            format!("{{\"type\":\"topic\"{}{topic}}}", room_field(current))
        }
        Command::History(n) => {
            let limit = n.map_or(String::new(), |n| format!(",\"limit\":{n}"));
            format!("{{\"type\":\"history\"{}{limit}}}", room_field(current))
        }
        Command::Who => "{\"type\":\"who\"}".to_string(),
        _ => return None,
    })
}

/// Shared between the threads: `/history` requests not yet answered, so an
/// empty answer can say so (an empty replay on joining a new room stays quiet).
struct Wanted {
    history: AtomicU32,
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
    let wanted = Arc::new(Wanted {
        history: AtomicU32::new(0),
    });
    let (tx, rx) = mpsc::channel();
    {
        let quitting = Arc::clone(&quitting);
        let activity = Arc::clone(&activity);
        let wanted = Arc::clone(&wanted);
        thread::spawn(move || read_server(reader_stream, style, quitting, activity, wanted, tx));
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

    let mut rooms = Rooms::new();
    loop {
        let Some(line) = next_line() else {
            return quit(&mut writer, &name, &quitting, &activity, &rx);
        };
        drain_events(&rx, &mut rooms, style)?;
        let line = line.trim_end_matches('\r');
        let cmd = parse_command(line);
        match &cmd {
            Command::Empty => continue,
            Command::Quit => return quit(&mut writer, &name, &quitting, &activity, &rx),
            Command::Help => println!("{HELP}"),
            Command::Usage(usage) => println!("{}", style.warn(&format!("!!! {usage}"))),
            Command::Unknown(cmd) => {
                println!(
                    "{}",
                    style.warn(&format!("unknown command {} (try /help)", sanitize(cmd)))
                )
            }
            _ => {
                if let Command::History(_) = cmd {
                    wanted.history.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(req) = request(&cmd, &name, &rooms.current) {
                    send(&mut writer, &req)?;
                }
                match &cmd {
                    Command::Join(room) => {
                        let want = room.to_ascii_lowercase();
                        await_room(&rx, &mut rooms, style, |ev| match ev {
                            Event::RoomJoined(r) => r.eq_ignore_ascii_case(&want),
                            Event::RoomRefused => true,
                            _ => false,
                        })?
                    }
                    Command::Part(room) => {
                        let want = room.unwrap_or(&rooms.current).to_ascii_lowercase();
                        await_room(&rx, &mut rooms, style, |ev| match ev {
                            Event::RoomLeft(r) => r.eq_ignore_ascii_case(&want),
                            Event::NotInRoom => true,
                            _ => false,
                        })?
                    }
                    _ => {}
                }
            }
        }
        drain_events(&rx, &mut rooms, style)?;
    }
}

/// Applies the reader's pending events to the room state; `Err` when the
/// connection is gone.
fn drain_events(rx: &Receiver<Event>, rooms: &mut Rooms, style: Style) -> Result<(), String> {
    while let Ok(ev) = rx.try_recv() {
        handle_event(&ev, rooms, style)?;
    }
    Ok(())
}

fn handle_event(ev: &Event, rooms: &mut Rooms, style: Style) -> Result<(), String> {
    if *ev == Event::Closed {
        return Err("connection to the server was lost".into());
    }
    // A join says where plain lines go in its own line; a leave does not.
    let leaving = matches!(ev, Event::RoomLeft(_));
    if let Some(current) = rooms.apply(ev)
        && leaving
    {
        println!(
            "{}",
            style.note(&format!("(plain lines now go to {})", sanitize(current)))
        );
    }
    Ok(())
}

/// Handles events until one satisfies `done` or [`ROOM_ANSWER_WAIT`] passes.
fn await_room(
    rx: &Receiver<Event>,
    rooms: &mut Rooms,
    style: Style,
    done: impl Fn(&Event) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + ROOM_ANSWER_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => {
                handle_event(&ev, rooms, style)?;
                if done(&ev) {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => {
                return Err("connection to the server was lost".into());
            }
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
            "{{\"type\":\"join\",\"sender\":{},\"features\":[\"presence\",\"rooms\"]}}",
            json_string(&candidate)
        );
        send(writer, &req)?;
        loop {
            match rx.recv() {
                Ok(Event::Joined) => return Ok(candidate),
                Ok(Event::NameRefused) => break,
                Ok(Event::Closed) | Err(_) => {
                    return Err("connection to the server was lost while joining".into());
                }
                Ok(_) => continue,
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

/// The reader thread: prints every server message; reports join outcomes,
/// room changes and EOF.
fn read_server(
    stream: TcpStream,
    style: Style,
    quitting: Arc<AtomicBool>,
    activity: Arc<Activity>,
    wanted: Arc<Wanted>,
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
        let (mut out, event) = render(text, style);
        if let Some(Event::History { room, empty }) = &event {
            // An answer to /history (not a replay on joining) says when it is empty.
            let asked = wanted
                .history
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if asked && *empty {
                let note = format!("*** No earlier messages in {}.", sanitize(room));
                out = Some(style.info(&note));
            }
        }
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

/// Formats one server line; the event, if any, is for the main thread. A
/// `history` answer may give several lines (joined by `\n`) or none.
fn render(line: &str, style: Style) -> (Option<String>, Option<Event>) {
    match json::parse(line, MAX_JSON_DEPTH) {
        Ok(obj @ Value::Object(_)) => render_object(&obj, style),
        _ => (Some(style.dim(&format!("? {}", sanitize(line)))), None),
    }
}

/// A string or number field, sanitized; empty when absent.
fn text_of(obj: &Value, k: &str) -> String {
    match obj.get(k) {
        Some(Value::String(v)) => sanitize(v),
        Some(Value::Number(n)) => sanitize(n),
        _ => String::new(),
    }
}

/// A list of strings, sanitized and joined with `, `.
fn list_of(obj: &Value, k: &str) -> String {
    obj.get(k)
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(sanitize)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `[#room HH:MM:SS] `, `[HH:MM:SS] ` for `#lobby` (or no room), `[#room] `
/// without a time, or nothing.
fn prefix(obj: &Value, style: Style) -> String {
    let room = text_of(obj, "room");
    let room = (!room.is_empty() && room != LOBBY).then_some(room);
    let stamp = text_of(obj, "timestamp");
    let inner = match (room, stamp.is_empty()) {
        (Some(r), false) => format!("{r} {stamp}"),
        (Some(r), true) => r,
        (None, false) => stamp,
        (None, true) => return String::new(),
    };
    style.dim(&format!("[{inner}] "))
}

fn render_object(obj: &Value, style: Style) -> (Option<String>, Option<Event>) {
    let s = |k: &str| text_of(obj, k);
    let list = |k: &str| list_of(obj, k);
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
            let ev = obj.get("user").map(|_| Event::Joined);
            (style.info(&format!("*** {}", s("message"))), ev)
        }
        "error" => {
            let code = s("code");
            let ev = match code.as_str() {
                "name_taken" | "name_invalid" => Some(Event::NameRefused),
                "room_invalid" | "room_limit" => Some(Event::RoomRefused),
                "not_in_room" => Some(Event::NotInRoom),
                _ => None,
            };
            let hint = if ev == Some(Event::NameRefused) {
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
        "room_joined" => {
            let count = s("count");
            let noun = if count == "1" { "user" } else { "users" };
            let mut text = format!("*** You are in {} ({count} {noun}", s("room"));
            let users = list("users");
            if !users.is_empty() {
                text.push_str(&format!(": {users}"));
            }
            text.push(')');
            let topic = s("topic");
            if !topic.is_empty() {
                text.push_str(&format!(". Topic: {topic}"));
            }
            text.push_str(". Plain lines go here now.");
            let ev = Event::RoomJoined(text_of(obj, "room"));
            // The room is in the sentence: no room prefix.
            return (Some(style.info(&text)), Some(ev));
        }
        "room_left" => {
            let text = format!("*** You left {}.", s("room"));
            return (Some(style.info(&text)), Some(Event::RoomLeft(s("room"))));
        }
        "room_list" => {
            let mut text = format!("*** Rooms ({})", s("total"));
            let rooms = obj
                .get("rooms")
                .and_then(Value::as_array)
                .unwrap_or_default();
            for (i, r) in rooms.iter().enumerate() {
                text.push_str(if i == 0 { ": " } else { ", " });
                text.push_str(&format!("{} ({})", text_of(r, "name"), text_of(r, "users")));
                let topic = text_of(r, "topic");
                if !topic.is_empty() {
                    text.push_str(&format!(" {topic}"));
                }
            }
            (style.info(&text), None)
        }
        "topic" => {
            let topic = match s("topic") {
                t if t.is_empty() => "(none)".to_string(),
                t => t,
            };
            let text = match s("sender") {
                by if by.is_empty() || by == "Server" => {
                    format!("*** Topic of {}: {topic}", s("room"))
                }
                by => format!("*** {by} set the topic of {}: {topic}", s("room")),
            };
            (style.note(&text), None)
        }
        "history" => return render_history(obj, style),
        other => (style.dim(&format!("({other}) {}", s("message"))), None),
    };
    (Some(format!("{}{body}", prefix(obj, style))), event)
}

/// A `history` answer: one `(history)` line per chat message, oldest first,
/// after a note when some messages could not be served.
fn render_history(obj: &Value, style: Style) -> (Option<String>, Option<Event>) {
    let room = text_of(obj, "room");
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or_default();
    let mut lines = Vec::new();
    let head = if room.is_empty() || room == LOBBY {
        String::new()
    } else {
        style.dim(&format!("[{room}] "))
    };
    if obj.get("gap") == Some(&Value::Bool(true)) {
        lines.push(format!(
            "{head}{}",
            style.note("*** Some messages were missed.")
        ));
    }
    for m in messages {
        if text_of(m, "type") != "message" {
            continue;
        }
        let sender = text_of(m, "sender");
        let body = if sender == "Server" {
            style.note(&format!("(history) *** {}", text_of(m, "message")))
        } else {
            format!(
                "{} {}: {}",
                style.dim("(history)"),
                style.name(&sender),
                text_of(m, "message")
            )
        };
        lines.push(format!("{}{body}", prefix(m, style)));
    }
    let event = Event::History {
        room,
        empty: messages.is_empty(),
    };
    let out = (!lines.is_empty()).then(|| lines.join("\n"));
    (out, Some(event))
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
    fn plain(line: &str) -> String {
        render(line, Style { color: false }).0.unwrap_or_default()
    }

    #[test]
    fn room_lines_show_the_room_and_lobby_lines_stay_as_they_were() {
        assert_eq!(
            plain(
                r##"{"type":"message","sender":"an","message":"hi","room":"#toan","seq":3,"ts":1,"timestamp":"10:01:02"}"##
            ),
            "[#toan 10:01:02] an: hi"
        );
        assert_eq!(
            plain(
                r##"{"type":"message","sender":"an","message":"hi","room":"#lobby","seq":3,"ts":1,"timestamp":"10:01:02"}"##
            ),
            "[10:01:02] an: hi"
        );
        assert_eq!(
            plain(r#"{"type":"message","sender":"an","message":"hi","timestamp":"10:01:02"}"#),
            "[10:01:02] an: hi"
        );
        assert_eq!(
            plain(
                r##"{"type":"message","sender":"Server","message":"bo joined #toan.","room":"#toan","timestamp":"10:01:03"}"##
            ),
            "[#toan 10:01:03] *** bo joined #toan."
        );
        // A hostile room name cannot reach the terminal raw.
        assert!(
            !plain(r##"{"type":"message","sender":"a","message":"x","room":"#a\u001b[2J"}"##)
                .contains('\u{1b}')
        );
    }

    #[test]
    fn renders_room_events() {
        let style = Style { color: false };
        let (out, ev) = render(
            r##"{"type":"room_joined","room":"#math","topic":"fractions","users":["an","bo"],"count":2,"epoch":"e","seq":4,"timestamp":"10:00:00"}"##,
            style,
        );
        assert_eq!(
            out.as_deref(),
            Some(
                "*** You are in #math (2 users: an, bo). Topic: fractions. Plain lines go here now."
            )
        );
        assert_eq!(ev, Some(Event::RoomJoined("#math".into())));
        // Big rooms omit the user list.
        let (out, _) = render(
            r##"{"type":"room_joined","room":"#big","topic":"","count":1,"epoch":"e","seq":0}"##,
            style,
        );
        assert_eq!(
            out.as_deref(),
            Some("*** You are in #big (1 user). Plain lines go here now.")
        );
        let (out, ev) = render(
            r##"{"type":"room_left","room":"#math","timestamp":"10:00:01"}"##,
            style,
        );
        assert_eq!(out.as_deref(), Some("*** You left #math."));
        assert_eq!(ev, Some(Event::RoomLeft("#math".into())));
        assert_eq!(
            plain(
                r##"{"type":"room_list","rooms":[{"name":"#lobby","users":3,"topic":""},{"name":"#math","users":2,"topic":"fractions"}],"total":2,"timestamp":"10:00:02"}"##
            ),
            "[10:00:02] *** Rooms (2): #lobby (3), #math (2) fractions"
        );
        assert_eq!(
            plain(
                r##"{"type":"topic","room":"#math","topic":"maps","sender":"an","timestamp":"10:00:03"}"##
            ),
            "[#math 10:00:03] *** an set the topic of #math: maps"
        );
        assert_eq!(
            plain(
                r##"{"type":"topic","room":"#math","topic":"","sender":"Server","timestamp":"10:00:03"}"##
            ),
            "[#math 10:00:03] *** Topic of #math: (none)"
        );
        let (out, ev) = render(
            r#"{"type":"error","sender":"Server","code":"room_limit","message":"Too many rooms.","timestamp":"10:00:04"}"#,
            style,
        );
        assert_eq!(
            out.as_deref(),
            Some("[10:00:04] !!! Too many rooms. (room_limit)")
        );
        assert_eq!(ev, Some(Event::RoomRefused));
        let (_, ev) = render(
            r#"{"type":"error","code":"not_in_room","message":"no"}"#,
            style,
        );
        assert_eq!(ev, Some(Event::NotInRoom));
    }

    #[test]
    fn history_lines_are_marked() {
        let style = Style { color: false };
        let (out, ev) = render(
            r##"{"type":"history","room":"#talk","messages":[{"type":"message","sender":"tina","message":"one","room":"#talk","seq":1,"ts":5,"timestamp":"09:00:00"},{"type":"message","sender":"bo","message":"two","room":"#talk","seq":2,"ts":6,"timestamp":"09:00:01"}],"complete":true,"gap":true,"timestamp":"10:00:00"}"##,
            style,
        );
        assert_eq!(
            out.as_deref(),
            Some(
                "[#talk] *** Some messages were missed.\n\
                 [#talk 09:00:00] (history) tina: one\n\
                 [#talk 09:00:01] (history) bo: two"
            )
        );
        assert_eq!(
            ev,
            Some(Event::History {
                room: "#talk".into(),
                empty: false
            })
        );
        let (out, ev) = render(
            r##"{"type":"history","room":"#lobby","messages":[],"complete":true,"gap":false}"##,
            style,
        );
        assert_eq!(out, None, "an empty replay prints nothing by itself");
        assert_eq!(
            ev,
            Some(Event::History {
                room: "#lobby".into(),
                empty: true
            })
        );
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command("  "), Command::Empty);
        assert_eq!(parse_command("hello"), Command::Say("hello".into()));
        assert_eq!(parse_command("@bo psst"), Command::Say("@bo psst".into()));
        assert_eq!(parse_command("//shrug"), Command::Say("/shrug".into()));
        assert_eq!(
            parse_command("/msg bo  psst"),
            Command::Say("@bo psst".into())
        );
        assert_eq!(
            parse_command("/msg bo"),
            Command::Usage("usage: /msg NAME TEXT")
        );
        assert_eq!(parse_command("/join #Toan"), Command::Join("#Toan".into()));
        assert_eq!(parse_command("/join toan"), Command::Join("#toan".into()));
        assert_eq!(parse_command("/join"), Command::Usage("usage: /join #ROOM"));
        assert_eq!(
            parse_command("/join a b"),
            Command::Usage("usage: /join #ROOM")
        );
        assert_eq!(parse_command("/part"), Command::Part(None));
        assert_eq!(parse_command("/part #art"), Command::Part(Some("#art")));
        assert_eq!(
            parse_command("/part art"),
            Command::Usage("usage: /part [#ROOM]")
        );
        assert_eq!(parse_command("/rooms"), Command::Rooms);
        assert_eq!(parse_command("/topic"), Command::Topic(None));
        assert_eq!(
            parse_command("/topic maps and more "),
            Command::Topic(Some("maps and more"))
        );
        assert_eq!(parse_command("/history"), Command::History(None));
        assert_eq!(parse_command("/history 5"), Command::History(Some(5)));
        for bad in ["/history 0", "/history x", "/history -1"] {
            assert_eq!(
                parse_command(bad),
                Command::Usage("usage: /history [COUNT]"),
                "{bad}"
            );
        }
        assert_eq!(parse_command("/who"), Command::Who);
        assert_eq!(parse_command("/quit"), Command::Quit);
        assert_eq!(parse_command("/help"), Command::Help);
        assert_eq!(parse_command("/dance now"), Command::Unknown("/dance now"));
    }

    #[test]
    fn requests_name_the_current_room() {
        let req = |line: &str, current: &str| request(&parse_command(line), "an", current);
        assert_eq!(
            req("hi", "#lobby").as_deref(),
            Some(r#"{"type":"message","sender":"an","message":"hi"}"#)
        );
        assert_eq!(
            req("hi", "#toan").as_deref(),
            Some(r##"{"type":"message","sender":"an","message":"hi","room":"#toan"}"##)
        );
        assert_eq!(
            req("/join #Art", "#toan").as_deref(),
            Some(r##"{"type":"room_join","room":"#Art"}"##)
        );
        assert_eq!(
            req("/part", "#toan").as_deref(),
            Some(r##"{"type":"room_leave","room":"#toan"}"##)
        );
        assert_eq!(
            req("/part #art", "#toan").as_deref(),
            Some(r##"{"type":"room_leave","room":"#art"}"##)
        );
        assert_eq!(
            req("/rooms", "#toan").as_deref(),
            Some(r#"{"type":"rooms"}"#)
        );
        assert_eq!(
            req("/topic", "#toan").as_deref(),
            Some(r##"{"type":"topic","room":"#toan"}"##)
        );
        assert_eq!(
            req("/topic a \"b\"", "#toan").as_deref(),
            Some(r##"{"type":"topic","room":"#toan","topic":"a \"b\""}"##)
        );
        assert_eq!(
            req("/history 5", "#toan").as_deref(),
            Some(r##"{"type":"history","room":"#toan","limit":5}"##)
        );
        assert_eq!(
            req("/history", "#lobby").as_deref(),
            Some(r##"{"type":"history","room":"#lobby"}"##)
        );
        assert_eq!(req("/help", "#toan"), None);
    }

    #[test]
    fn the_current_room_follows_joins_and_leaves() {
        let mut rooms = Rooms::new();
        assert_eq!(rooms.current, "#lobby");
        assert_eq!(rooms.apply(&Event::RoomJoined("#lobby".into())), None);
        assert_eq!(rooms.apply(&Event::RoomJoined("#a".into())), Some("#a"));
        assert_eq!(rooms.apply(&Event::RoomJoined("#b".into())), Some("#b"));
        // Leaving another room keeps the current one.
        assert_eq!(rooms.apply(&Event::RoomLeft("#a".into())), None);
        assert_eq!(rooms.current, "#b");
        // Leaving the current room goes back to the latest one still joined.
        assert_eq!(rooms.apply(&Event::RoomJoined("#c".into())), Some("#c"));
        assert_eq!(rooms.apply(&Event::RoomLeft("#c".into())), Some("#b"));
        assert_eq!(rooms.apply(&Event::RoomLeft("#b".into())), Some("#lobby"));
        assert_eq!(rooms.apply(&Event::RoomLeft("#lobby".into())), None);
        assert_eq!(rooms.current, "#lobby");
        assert_eq!(rooms.apply(&Event::NotInRoom), None);
    }
}
