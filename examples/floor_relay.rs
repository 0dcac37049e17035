//! Floor relay: about the least a line relay can do on this machine, as the
//! measuring stick of `make bench` (bench/run.py drives it with
//! `chat-load --floor` beside the chat server). No protocol: no join, no
//! welcome, no parsing. One mio loop; every complete line read in a loop turn,
//! from any connection, goes into one buffer for the turn, and at the end of the
//! turn that buffer (one `Rc<[u8]>`) is queued for every connection and written
//! with one `writev` each. WRITABLE interest only while output is pending.
//!
//! `cargo run --release --example floor_relay -- [PORT]` (default 0 = a free
//! port); prints `listening on tcp://127.0.0.1:PORT` once bound.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::process::ExitCode;
use std::rc::Rc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

/// Longest unfinished line kept per connection; longer drops the connection.
const MAX_LINE: usize = 64 * 1024;
/// Most output queued per connection; more drops the connection.
const MAX_OUT: usize = 64 << 20;
const MAX_IOV: usize = 64;
/// Pending connections the kernel may queue, as the chat server asks for.
const BACKLOG: i32 = 1024;
const LISTENER: Token = Token(0);

struct Conn {
    stream: TcpStream,
    partial: Vec<u8>,
    out: VecDeque<Rc<[u8]>>,
    /// Bytes of `out[0]` already written, and bytes queued in all.
    sent: usize,
    queued: usize,
    /// WRITABLE interest is registered (output pending after a short write).
    waiting: bool,
}

fn main() -> ExitCode {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("floor_relay: bad port: {e}");
            return ExitCode::from(2);
        }
    };
    match run(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor_relay: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(port: u16) -> io::Result<()> {
    let mut listener = TcpListener::bind(([127, 0, 0, 1], port).into())?;
    raise_backlog(&listener);
    println!("listening on tcp://{}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let (mut turn, mut woke, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        // Accept first: a client whose connect completed before a line was sent gets it.
        if events.iter().any(|e| e.token() == LISTENER) {
            accept_all(&listener, poll.registry(), &mut conns);
        }
        for ev in events.iter() {
            let k = ev.token().0.wrapping_sub(1);
            let Some(c) = conns.get_mut(k) else { continue };
            if ev.is_writable() {
                woke.push(k);
            }
            if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                && read_lines(c, &mut scratch, &mut turn).is_err()
            {
                dead.push(k);
            }
        }
        if !turn.is_empty() {
            let chunk: Rc<[u8]> = Rc::from(turn.as_slice());
            turn.clear();
            for (k, c) in conns.iter_mut() {
                c.queued += chunk.len();
                c.out.push_back(Rc::clone(&chunk));
                if c.queued > MAX_OUT || (!c.waiting && flush(c, k, poll.registry()).is_err()) {
                    dead.push(k);
                }
            }
        }
        for k in woke.drain(..) {
            if let Some(c) = conns.get_mut(k)
                && c.waiting
                && flush(c, k, poll.registry()).is_err()
            {
                dead.push(k);
            }
        }
        for k in dead.drain(..) {
            if let Some(mut c) = conns.try_remove(k) {
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, registry: &Registry, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let token = Token(entry.key() + 1);
                if registry
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        partial: Vec::new(),
                        out: VecDeque::new(),
                        sent: 0,
                        queued: 0,
                        waiting: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("floor_relay: accept: {e}");
                return;
            }
        }
    }
}

/// Reads until `WouldBlock`, appending complete lines to `turn`; `Err` drops the connection.
fn read_lines(c: &mut Conn, scratch: &mut [u8], turn: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let n = match c.stream.read(scratch) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = scratch.get(..n).unwrap_or_default();
        match data.iter().rposition(|&b| b == b'\n') {
            Some(end) => {
                turn.extend_from_slice(&c.partial);
                c.partial.clear();
                let (lines, rest) = data.split_at(end + 1);
                turn.extend_from_slice(lines);
                c.partial.extend_from_slice(rest);
            }
            None => c.partial.extend_from_slice(data),
        }
        if c.partial.len() > MAX_LINE {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// Writes queued output with `writev` until done or `WouldBlock`; keeps
/// WRITABLE interest registered exactly while output is left.
fn flush(c: &mut Conn, k: usize, registry: &Registry) -> io::Result<()> {
    while !c.out.is_empty() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, chunk) in iov.iter_mut().zip(c.out.iter()) {
            let skip = if n == 0 { c.sent } else { 0 };
            *slot = IoSlice::new(chunk.get(skip..).unwrap_or_default());
            n += 1;
        }
        match c.stream.write_vectored(iov.get(..n).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut w) => {
                c.queued -= w;
                while let Some(front) = c.out.front() {
                    let left = front.len() - c.sent;
                    if w < left {
                        c.sent += w;
                        break;
                    }
                    w -= left;
                    c.sent = 0;
                    c.out.pop_front();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let want = !c.out.is_empty();
    if want != c.waiting {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry.reregister(&mut c.stream, Token(k + 1), interest)?;
        c.waiting = want;
    }
    Ok(())
}

/// mio listens with a backlog of 128; `listen(2)` again only raises it.
/// Best effort, like the chat server's.
fn raise_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: `listen` takes a descriptor and an integer and touches no memory;
    // the descriptor is owned by `listener` and open for this whole call.
    unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
}
