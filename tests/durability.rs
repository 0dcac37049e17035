//! Durable history under a crash: the real binary on a fresh data directory,
//! senders in one room, an observer recording every line it is shown, then
//! `kill -9` in the middle of the traffic and a restart on the same directory.
//! With `--fsync always` every line anybody saw is in the replay, with the same
//! `seq`; with `everysec` at most about a second of them may be missing, and
//! what survived is still a gap-free prefix.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::TempDir;
use common::binary::{ServerProcess, Spawn};
use serde_json::{Value, json};

/// Lines per second all senders together aim for (bounded: the runs are short).
const RATE: u64 = 400;

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn join(addr: SocketAddr, name: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut c = Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        };
        c.send(&json!({"type":"join","sender":name,"features":["rooms"]}));
        c.until(|v| v["type"] == "room_joined");
        c
    }

    fn send(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).expect("write");
    }

    fn next(&mut self) -> Option<Value> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => serde_json::from_str(&s).ok(),
        }
    }

    fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.next() {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => break,
            }
        }
        panic!("never received the expected object");
    }
}

/// (seq, text) of a room line.
fn line_of(v: &Value) -> Option<(u64, String)> {
    (v["type"] == "message" && v["room"] == "#d" && v["sender"] != "Server").then(|| {
        (
            v["seq"].as_u64().unwrap_or(0),
            v["message"].as_str().unwrap_or_default().to_owned(),
        )
    })
}

/// A room's lines: (seq, text).
type Lines = Vec<(u64, String)>;

/// Runs traffic, kills the server with SIGKILL mid-way, restarts it on the same
/// directory; returns what the observer saw, what the restarted server replays,
/// and the epoch before and after.
fn crash_and_replay(fsync: &str) -> (Lines, Lines, String, String) {
    let dir = TempDir::new(fsync);
    let dir_arg = dir.0.to_string_lossy().into_owned();
    let args = ["--data-dir", dir_arg.as_str(), "--fsync", fsync];
    let mut server = ServerProcess::start(Spawn {
        args: &args,
        ..Spawn::default()
    });
    let mut observer = Conn::join(server.tcp, "observer");
    observer.send(&json!({"type":"room_join","room":"#d"}));
    let joined = observer.until(|v| v["type"] == "room_joined");
    let epoch = joined["epoch"].as_str().expect("epoch").to_owned();
    observer.until(|v| v["type"] == "history");
    let seen = thread::spawn(move || {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match observer.next() {
                Some(v) => seen.extend(line_of(&v)),
                None => break, // EOF: the server is gone
            }
        }
        seen
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for k in 0..2 {
        let stop = stop.clone();
        let addr = server.tcp;
        senders.push(thread::spawn(move || {
            let mut c = Conn::join(addr, &format!("sender{k}"));
            c.send(&json!({"type":"room_join","room":"#d"}));
            c.until(|v| v["type"] == "history");
            // Own echoes are not read: the socket buffers hold them easily.
            let per_sender = Duration::from_micros(1_000_000 * 2 / RATE);
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                i += 1;
                let line = format!(
                    "{}\n",
                    json!({"type":"message","room":"#d","message":format!("s{k}-{i}")})
                );
                if c.writer.write_all(line.as_bytes()).is_err() {
                    break;
                }
                thread::sleep(per_sender);
            }
        }));
    }
    thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGKILL);
    let _ = server.wait_exit(Duration::from_secs(5));
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        let _ = s.join();
    }
    let seen = seen.join().expect("observer");

    let server = ServerProcess::start(Spawn {
        args: &args,
        ..Spawn::default()
    });
    let mut reader = Conn::join(server.tcp, "afterwards");
    reader.send(&json!({"type":"room_join","room":"#d","since":{"epoch":epoch,"seq":0}}));
    let rejoined = reader.until(|v| v["type"] == "room_joined");
    let history = reader.until(|v| v["type"] == "history");
    assert_eq!(
        history["gap"], false,
        "a resume from 0 in the same epoch is exact"
    );
    let replay: Vec<(u64, String)> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(line_of)
        .collect();
    let new_epoch = rejoined["epoch"].as_str().unwrap_or_default().to_owned();
    (seen, replay, epoch, new_epoch)
}

fn check_prefix(replay: &[(u64, String)]) {
    for (i, (seq, _)) in replay.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "the replay is gap-free from 1");
    }
}

#[test]
fn with_fsync_always_nothing_anybody_saw_is_lost() {
    let (seen, replay, epoch, new_epoch) = crash_and_replay("always");
    assert!(
        seen.len() > 100,
        "too little traffic before the kill: {}",
        seen.len()
    );
    assert_eq!(
        epoch, new_epoch,
        "the epoch is kept with the data directory"
    );
    check_prefix(&replay);
    for (seq, text) in &seen {
        let got = replay.get((*seq as usize).wrapping_sub(1));
        assert_eq!(
            got,
            Some(&(*seq, text.clone())),
            "seen line {seq} {text:?} is not in the replay (replay has {})",
            replay.len()
        );
    }
}

#[test]
fn with_fsync_everysec_at_most_about_a_second_is_lost() {
    let (seen, replay, epoch, new_epoch) = crash_and_replay("everysec");
    assert!(
        seen.len() > 100,
        "too little traffic before the kill: {}",
        seen.len()
    );
    assert_eq!(epoch, new_epoch);
    check_prefix(&replay);
    // A killed process loses only what it had not written; `everysec` writes
    // every turn, so in practice nothing is missing. The promise is weaker:
    // at most about a second's worth.
    let missing = seen
        .iter()
        .filter(|(seq, text)| {
            replay.get((*seq as usize).wrapping_sub(1)) != Some(&(*seq, text.clone()))
        })
        .count() as u64;
    assert!(missing <= RATE * 3 / 2, "{missing} seen lines missing");
}

/// Writes `n` lines into `#d` of a server on `dir`, then stops it gracefully.
fn fill(dir: &str, n: usize) {
    let mut server = ServerProcess::start(Spawn {
        args: &["--data-dir", dir],
        ..Spawn::default()
    });
    let mut c = Conn::join(server.tcp, "filler");
    c.send(&json!({"type":"room_join","room":"#d"}));
    c.until(|v| v["type"] == "history");
    for i in 1..=n {
        c.send(&json!({"type":"message","room":"#d","message":format!("f{i}")}));
    }
    let last = format!("f{n}");
    c.until(|v| v["message"] == last.as_str());
    server.signal(libc::SIGTERM);
    assert!(
        server.wait_exit(Duration::from_secs(5)).is_some(),
        "stops on SIGTERM"
    );
}

fn segments(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_damaged_record_stops_start_up_with_its_place_and_repair_cuts_there() {
    let dir = TempDir::new("damaged");
    let dir_arg = dir.0.to_string_lossy().into_owned();
    fill(&dir_arg, 20);
    let seg = segments(&dir.0).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    // Flip one byte inside the 11th record (f11): its checksum no longer matches.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let eleventh = starts[starts.len() - 11];
    let at = eleventh + 20;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).expect("write segment");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multiuserchat"))
        .args([
            "--host",
            "127.0.0.1",
            "--tcp-port",
            "0",
            "--ws-port",
            "0",
            "--http-port",
            "0",
        ])
        .args(["--data-dir", dir_arg.as_str()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "start-up must stop");
    let err = String::from_utf8_lossy(&out.stderr);
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(err.contains(name), "names the file: {err}");
    assert!(
        err.contains(&eleventh.to_string()),
        "names the offset {eleventh}: {err}"
    );
    assert!(err.contains("repair"), "says how to repair: {err}");

    let server = ServerProcess::start(Spawn {
        args: &["--data-dir", dir_arg.as_str(), "--repair-history"],
        ..Spawn::default()
    });
    let mut c = Conn::join(server.tcp, "afterRepair");
    c.send(&json!({"type":"room_join","room":"#d"}));
    let joined = c.until(|v| v["type"] == "room_joined");
    let history = c.until(|v| v["type"] == "history");
    let kept: Vec<(u64, String)> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(line_of)
        .collect();
    assert_eq!(joined["seq"], 10, "cut before the damaged record");
    check_prefix(&kept);
    assert_eq!(kept.len(), 10);
}

#[test]
fn a_torn_last_record_is_cut_and_everything_before_it_kept() {
    let dir = TempDir::new("torn");
    let dir_arg = dir.0.to_string_lossy().into_owned();
    fill(&dir_arg, 5);
    let seg = segments(&dir.0).pop().expect("a segment");
    let bytes = std::fs::read(&seg).expect("read");
    // Cut the last record in half, as a crash in the middle of a write would.
    let cut = bytes.len() - 10;
    std::fs::write(&seg, &bytes[..cut]).expect("write");
    let server = ServerProcess::start(Spawn {
        args: &["--data-dir", dir_arg.as_str()],
        ..Spawn::default()
    });
    let mut c = Conn::join(server.tcp, "afterTear");
    c.send(&json!({"type":"room_join","room":"#d"}));
    let joined = c.until(|v| v["type"] == "room_joined");
    assert_eq!(joined["seq"], 4);
    // The numbering goes on from the last whole record.
    c.send(&json!({"type":"message","room":"#d","message":"next"}));
    let m = c.until(|v| v["message"] == "next");
    assert_eq!(m["seq"], 5);
}
