//! Log output of the real binary: with stderr redirected (a file, a pipe,
//! journald) the lines carry no terminal colour escapes, even when `TERM`
//! names a colour terminal.

mod common;

use std::io::Read;
use std::time::Duration;

use common::Client;
use common::binary::{ServerProcess, Spawn};

/// Starts the binary at info level with stderr piped and `env` set, makes it
/// log a connection, stops it with SIGTERM and returns everything it wrote to stderr.
fn stderr_of_a_run(env: &[(&str, &str)]) -> Vec<u8> {
    let mut server = ServerProcess::start(Spawn {
        args: &["--log-level", "info"],
        env,
        stderr: true,
        ..Spawn::default()
    });
    let mut stderr = server.take_stderr().expect("stderr is piped");
    // Connecting and joining are logged at info; the welcome means both happened.
    let client = Client::join(server.tcp, "logger");
    drop(client);
    server.signal(libc::SIGTERM);
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the server did not stop on SIGTERM"
    );
    // The child has exited, so the pipe ends and this read is bounded.
    let mut out = Vec::new();
    stderr.read_to_end(&mut out).expect("read stderr");
    out
}

#[test]
fn redirected_log_has_no_colour_escapes() {
    let out = stderr_of_a_run(&[("TERM", "xterm-256color")]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("connected"), "no connection logged: {text}");
    assert!(
        !out.contains(&0x1b),
        "colour escapes in redirected log: {text:?}"
    );
}
