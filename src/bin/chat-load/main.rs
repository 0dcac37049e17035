//! `chat-load`: load generator for the chat server, on one single-threaded
//! `mio` poll loop (no thread per client).
//!
//! Connects C clients (JSON lines, text mode, WebSocket or a mix), lets the
//! first S of them send M messages each, checks that every client receives every
//! broadcast exactly once and in each sender's order, and reports throughput,
//! latency percentiles and CPU/memory cost. Only loopback targets are accepted.
//!
//! `--private PCT` sends that share of each sender's messages as private
//! messages (`@NAME text`) to other staying clients, round-robin: the target
//! must get each exactly once and in the sender's order (interleaved with the
//! sender's broadcasts), nobody else may get it (a delivery elsewhere counts as
//! misdelivered), and the sender must get the server's confirmation
//! (`private_sent` / `[private to NAME]`) in its place among its own messages.
//! `--floor` drives a plain line relay (examples/floor_relay.rs, the
//! benchmark floor) the same way: no join, the same message lines and checks.
//!
//! `--churn RATE` adds RATE short-lived clients per second during the send
//! phase (JSON, text and WebSocket in turn; join, welcome, 200 ms, then exit or
//! an abrupt close); cycles started / completed / failed are reported, and a
//! failed cycle fails the run. Staying clients ignore join/leave notices,
//! presence updates and user lists.
//!
//! `--rooms N` spreads the staying clients over rooms `#load0..#load{N-1}`
//! (round-robin): each joins its room before the send phase, senders send to
//! their room, and the checks become per room: a broadcast must reach exactly
//! the clients of its room (the sender included), once and in order, and
//! nobody else (a delivery elsewhere counts as misdelivered).
//!
//! Several servers joined into one chat (nodes of a cluster): `--addr` and
//! `--ws-addr` take several addresses (repeated and/or comma-separated);
//! client i connects to entry i mod n of the list for its wire (churn cycle k
//! to entry k mod n), and the report lists each entry with its clients.
//!
//! Same order: besides exactly-once and each sender's order, every receiver of
//! a room (everyone without rooms) must see that room's broadcasts in one and
//! the same total order; private messages are left out. Receivers that stayed
//! connected and got every broadcast are compared (see [`order`]); the report
//! says `same for N receivers` or `DIFFERS (k distinct orders)`.
//!
//! `--slow-readers N` adds N clients that join and then never read, and stops
//! sending once the server (its `/stats` at `--stats-addr`) has dropped them
//! all; the report gives how long that took. `--threads T` spreads the
//! clients over T generator threads, for loads one core cannot drive; the
//! checks and the report are the same. `--message-bytes N` pads the text.
//!
//! Modules: [`opts`] (flags, address spreading), [`driver`] (the poll loop,
//! churn, slow readers and the checks), [`threads`] (one run over several
//! generator threads, merged), [`shared`] (what the threads share),
//! [`stats`] (the server's `/stats` during the run), [`order`] (the
//! same-order fingerprints), [`route`] (which message goes to whom), [`wire`]
//! (request encoding, WebSocket client side, receive-path scanners), [`hist`]
//! (latency histogram), [`procfs`] (CPU and RSS from `/proc`).
//!
//! Source addresses: every client connects from 127.0.0.1 with a kernel-chosen
//! port. Binding other 127.0.0.x sources first would need raw `socket`/`bind`
//! calls that neither std nor mio 1.x offer; instead the limit is documented:
//! one source address gives about 28,000 connections per destination port
//! (`net.ipv4.ip_local_port_range` 32768-60999), well above the ≤ 11,000
//! clients of the planned scenarios, and loopback reuses ports in TIME_WAIT
//! (`net.ipv4.tcp_tw_reuse` = 2 by default), so back-to-back runs do not run out.
//!
//! Exit status: 0 all delivered; 1 lost, duplicated, reordered, unexpected or
//! misdelivered deliveries, dropped clients, failed churn cycles or receivers
//! that saw a room's broadcasts in different orders; 2 bad usage
//! or a (staying) client that could not join; 3 stalled or timed out.

mod driver;
mod hist;
mod opts;
mod order;
mod procfs;
mod route;
mod shared;
mod stats;
mod threads;
mod wire;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use driver::{Ending, Outcome};
use opts::Options;

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{}", opts::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("chat-load: {e}\n{}", opts::USAGE);
            return ExitCode::from(2);
        }
    };
    let pid = opts.server_pid.map(|p| p.to_string());
    let wall_start = Instant::now();
    let gen_cpu_start = procfs::cpu_secs("self");
    let server_cpu_start = pid.as_deref().and_then(procfs::cpu_secs);
    let mut rss_sampled: Option<u64> = None;
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let mut probe = || {
        if let Some(pid) = pid.as_deref()
            && last_sample.elapsed() >= Duration::from_millis(250)
        {
            last_sample = Instant::now();
            if let Some(kib) = procfs::status_kib(pid, "VmRSS") {
                rss_sampled = Some(rss_sampled.map_or(kib, |m| m.max(kib)));
            }
        }
    };
    // The server's resident memory once every client has joined, before any message.
    let mut rss_joined: Option<u64> = None;
    let mut on_joined = || {
        rss_joined = pid.as_deref().and_then(|p| procfs::status_kib(p, "VmRSS"));
    };
    let outcome = match threads::run(&opts, &mut probe, &mut on_joined) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("chat-load: {e}");
            return ExitCode::from(2);
        }
    };
    let gen_cpu = match (gen_cpu_start, procfs::cpu_secs("self")) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let wall_secs = wall_start.elapsed().as_secs_f64();
    let server_cpu = match (server_cpu_start, pid.as_deref().and_then(procfs::cpu_secs)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let server_rss = pid
        .as_deref()
        .and_then(|p| procfs::status_kib(p, "VmHWM"))
        .or(rss_sampled);
    let report = Report {
        opts: &opts,
        o: &outcome,
        gen_cpu,
        wall_secs,
        server_cpu,
        server_rss,
        server_rss_joined: rss_joined,
    };
    print!("{}", report.table());
    if opts.json {
        println!("{}", report.json());
    }
    if let Some(e) = &outcome.first_server_error {
        eprintln!("chat-load: first server error: {e}");
    }
    if let Some(e) = &outcome.first_misdelivery {
        eprintln!("chat-load: first misdelivery: {e}");
    }
    if let Some(e) = &outcome.churn.first_error {
        eprintln!("chat-load: first failed churn cycle: {e}");
    }
    if let Some((a, b)) = outcome.order.example {
        eprintln!("chat-load: clients {a} and {b} got the same broadcasts in different orders");
    }
    match outcome.ending {
        Ending::Stalled | Ending::TimedOut => ExitCode::from(3),
        Ending::Complete if report.errors() > 0 => ExitCode::from(1),
        Ending::Complete => ExitCode::SUCCESS,
    }
}

struct Report<'a> {
    opts: &'a Options,
    o: &'a Outcome,
    gen_cpu: Option<f64>,
    /// The generator's whole run, connects included (the CPU window).
    wall_secs: f64,
    server_cpu: Option<f64>,
    server_rss: Option<u64>,
    server_rss_joined: Option<u64>,
}

impl Report<'_> {
    /// The generator's CPU time in % of one core over its run (above 100
    /// with several threads).
    fn gen_cpu_pct(&self) -> Option<f64> {
        let cpu = self.gen_cpu?;
        (self.wall_secs > 0.0).then(|| 100.0 * cpu / self.wall_secs)
    }

    /// Slow readers in words: joined, dropped by the server, and when.
    fn slow(&self) -> String {
        let (o, n) = (self.o, self.opts.slow_readers);
        let dropped = o
            .slow_dropped
            .map_or("n/a (no /stats answer)".to_string(), |d| d.to_string());
        let when = o
            .slow_all_dropped_secs
            .map_or("not all dropped".to_string(), |s| {
                format!("all dropped {s:.3} s after the first send")
            });
        format!(
            "{n} ({} joined, {dropped} dropped by the server, {when}; {} seen closed)",
            o.slow_joined, o.slow_closed
        )
    }

    fn errors(&self) -> u64 {
        let o = self.o;
        o.lost
            + o.duplicated
            + o.reordered
            + o.unexpected
            + o.misdelivered
            + o.disconnected
            + o.churn.failed
            + o.order.groups_differing as u64
    }

    /// The same-order check in words.
    fn order(&self) -> String {
        let v = &self.o.order;
        let left_out = if v.left_out > 0 {
            format!(", {} left out (incomplete or disconnected)", v.left_out)
        } else {
            String::new()
        };
        if v.same() {
            return format!("same for {} receivers{left_out}", v.compared);
        }
        let rooms = if self.opts.rooms > 0 {
            format!(" in {} of {} rooms", v.groups_differing, self.opts.rooms)
        } else {
            String::new()
        };
        format!(
            "DIFFERS ({} distinct orders){rooms}, {} receivers compared{left_out}",
            v.distinct, v.compared
        )
    }

    /// `ADDR (N clients), ...` for the report.
    fn addr_list(list: &[(std::net::SocketAddr, usize)]) -> String {
        list.iter()
            .map(|(a, n)| format!("{a} ({n} clients)"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `[{"addr":"ADDR","clients":N},...]` for the JSON line.
    fn addr_json(list: &[(std::net::SocketAddr, usize)]) -> String {
        let items = list
            .iter()
            .map(|(a, n)| format!("{{\"addr\":\"{a}\",\"clients\":{n}}}"))
            .collect::<Vec<_>>()
            .join(",");
        format!("[{items}]")
    }

    /// Churn join latency (connect start to welcome) in milliseconds.
    fn churn_join_ms(&self) -> [(&'static str, f64); 3] {
        let h = &self.o.churn.join_latency;
        let ms = |ns: u64| ns as f64 / 1e6;
        [
            ("p50", ms(h.quantile(0.50))),
            ("p99", ms(h.quantile(0.99))),
            ("max", ms(h.max())),
        ]
    }

    fn deliveries_per_sec(&self) -> f64 {
        if self.o.delivery_secs > 0.0 {
            self.o.deliveries as f64 / self.o.delivery_secs
        } else {
            0.0
        }
    }

    fn latency_us(&self) -> [(&'static str, f64); 5] {
        let h = &self.o.latency;
        let us = |ns: u64| ns as f64 / 1000.0;
        [
            ("p50", us(h.quantile(0.50))),
            ("p90", us(h.quantile(0.90))),
            ("p99", us(h.quantile(0.99))),
            ("p999", us(h.quantile(0.999))),
            ("max", us(h.max())),
        ]
    }

    fn result(&self) -> &'static str {
        match self.o.ending {
            Ending::TimedOut => "TIMED OUT",
            Ending::Stalled => "STALLED",
            Ending::Complete if self.errors() > 0 => "FAILED",
            Ending::Complete => "OK",
        }
    }

    fn table(&self) -> String {
        let (o, opts) = (self.o, self.opts);
        let secs = |v: Option<f64>| v.map_or("n/a".to_string(), |s| format!("{s:.2} s"));
        let mut t = String::new();
        let _ = writeln!(
            t,
            "chat-load: {} clients ({}{}{}{}), {} senders x {} messages{}",
            o.clients,
            opts.proto.as_str(),
            if opts.floor { ", floor relay" } else { "" },
            if opts.threads > 1 {
                format!(", {} threads", opts.threads)
            } else {
                String::new()
            },
            if opts.rooms > 0 {
                format!(", {} rooms", opts.rooms)
            } else {
                String::new()
            },
            o.senders,
            opts.messages,
            opts.rate
                .map_or(String::new(), |r| format!(" at {r} msg/s"))
        );
        let joins_per_sec = if o.connect_secs > 0.0 {
            o.joined as f64 / o.connect_secs
        } else {
            0.0
        };
        let mut rows: Vec<(&str, String)> = Vec::new();
        if opts.slow_readers > 0 {
            rows.push(("slow readers", self.slow()));
        }
        if opts.several_addrs() {
            rows.push(("addresses", Self::addr_list(&o.addrs)));
            if !o.ws_addrs.is_empty() {
                rows.push(("ws addresses", Self::addr_list(&o.ws_addrs)));
            }
        }
        rows.extend([
            (
                "connect + join",
                format!(
                    "{:.3} s ({} joined, {joins_per_sec:.0}/s)",
                    o.connect_secs, o.joined
                ),
            ),
            ("messages sent", o.messages_sent.to_string()),
            (
                "deliveries",
                format!("{} of {} expected", o.deliveries, o.expected),
            ),
            (
                "deliveries/s",
                format!(
                    "{:.0} (over {:.3} s)",
                    self.deliveries_per_sec(),
                    o.delivery_secs
                ),
            ),
            (
                "lost/dup/reordered",
                format!(
                    "{} / {} / {} (skipped {})",
                    o.lost, o.duplicated, o.reordered, o.skipped
                ),
            ),
            ("order", self.order()),
            (
                "private",
                format!(
                    "{} sent ({}%), {} delivered, {} confirmed",
                    o.private_sent, opts.private_pct, o.private_delivered, o.private_confirmed
                ),
            ),
            ("unexpected", o.unexpected.to_string()),
            ("misdelivered", o.misdelivered.to_string()),
            ("disconnected", o.disconnected.to_string()),
            (
                "churn cycles",
                match opts.churn {
                    None => "off".to_string(),
                    Some(rate) => format!(
                        "{} started, {} completed ({} exit, {} abrupt), {} failed at {rate}/s",
                        o.churn.started,
                        o.churn.completed,
                        o.churn.voluntary,
                        o.churn.abrupt,
                        o.churn.failed
                    ),
                },
            ),
            (
                "churn join (ms)",
                self.churn_join_ms()
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.1}"))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
            ("server errors", o.server_errors.to_string()),
            (
                "latency (us)",
                self.latency_us()
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.0}"))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
            (
                "generator CPU",
                format!(
                    "{} ({} of one core over {:.2} s)",
                    secs(self.gen_cpu),
                    self.gen_cpu_pct()
                        .map_or("n/a".to_string(), |p| format!("{p:.0}%")),
                    self.wall_secs
                ),
            ),
            ("server CPU", secs(self.server_cpu)),
            (
                "server peak RSS",
                self.server_rss.map_or("n/a".into(), |k| format!("{k} KiB")),
            ),
            (
                "server RSS joined",
                self.server_rss_joined
                    .map_or("n/a".into(), |k| format!("{k} KiB")),
            ),
            ("result", self.result().to_string()),
        ]);
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<20} {v}");
        }
        t
    }

    /// One JSON object on one line; absent figures are `null`.
    fn json(&self) -> String {
        let o = self.o;
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.3}"));
        let lat = self
            .latency_us()
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v:.1}"))
            .collect::<Vec<_>>()
            .join(",");
        let churn_ms = self
            .churn_join_ms()
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v:.3}"))
            .collect::<Vec<_>>()
            .join(",");
        // Listed only when several were given, so one-address reports stay as they were.
        let addrs = if self.opts.several_addrs() {
            let ws = if o.ws_addrs.is_empty() {
                String::new()
            } else {
                format!(",\"ws_addrs\":{}", Self::addr_json(&o.ws_addrs))
            };
            format!(",\"addrs\":{}{ws}", Self::addr_json(&o.addrs))
        } else {
            String::new()
        };
        format!(
            concat!(
                "{{\"result\":\"{}\",\"proto\":\"{}\",\"floor\":{},\"rooms\":{},\"clients\":{},\"joined\":{},\"senders\":{},",
                "\"messages_per_sender\":{},\"messages_sent\":{},\"expected_deliveries\":{},",
                "\"deliveries\":{},\"deliveries_per_sec\":{:.1},\"delivery_secs\":{:.6},",
                "\"lost\":{},\"duplicated\":{},\"reordered\":{},\"skipped\":{},\"unexpected\":{},",
                "\"disconnected\":{},\"server_errors\":{},\"latency_us\":{{{}}},\"connect_secs\":{:.6},",
                "\"send_secs\":{:.6},\"gen_cpu_secs\":{},\"server_cpu_secs\":{},\"server_peak_rss_kib\":{},",
                "\"server_rss_joined_kib\":{},\"ws_clients\":{},\"private_pct\":{},\"private_sent\":{},",
                "\"private_delivered\":{},\"private_confirmed\":{},\"misdelivered\":{},",
                "\"churn_rate\":{},\"churn_started\":{},\"churn_completed\":{},\"churn_failed\":{},",
                "\"churn_voluntary\":{},\"churn_abrupt\":{},\"churn_join_ms\":{{{}}},",
                "\"order_same\":{},\"order_receivers\":{},\"order_left_out\":{},",
                "\"order_distinct\":{},\"order_groups_differing\":{},",
                "\"threads\":{},\"wall_secs\":{:.3},\"gen_cpu_pct\":{},\"message_bytes\":{},",
                "\"slow_readers\":{},\"slow_joined\":{},\"slow_dropped\":{},",
                "\"slow_all_dropped_secs\":{},\"slow_closed\":{}{}}}"
            ),
            self.result(),
            self.opts.proto.as_str(),
            self.opts.floor,
            self.opts.rooms,
            o.clients,
            o.joined,
            o.senders,
            self.opts.messages,
            o.messages_sent,
            o.expected,
            o.deliveries,
            self.deliveries_per_sec(),
            o.delivery_secs,
            o.lost,
            o.duplicated,
            o.reordered,
            o.skipped,
            o.unexpected,
            o.disconnected,
            o.server_errors,
            lat,
            o.connect_secs,
            o.send_secs,
            opt(self.gen_cpu),
            opt(self.server_cpu),
            self.server_rss
                .map_or("null".to_string(), |k| k.to_string()),
            self.server_rss_joined
                .map_or("null".to_string(), |k| k.to_string()),
            self.opts.ws_clients,
            self.opts.private_pct,
            o.private_sent,
            o.private_delivered,
            o.private_confirmed,
            o.misdelivered,
            opt(self.opts.churn),
            o.churn.started,
            o.churn.completed,
            o.churn.failed,
            o.churn.voluntary,
            o.churn.abrupt,
            churn_ms,
            o.order.same(),
            o.order.compared,
            o.order.left_out,
            o.order.distinct,
            o.order.groups_differing,
            self.opts.threads,
            self.wall_secs,
            opt(self.gen_cpu_pct()),
            self.opts.message_bytes,
            self.opts.slow_readers,
            o.slow_joined,
            o.slow_dropped.map_or("null".to_string(), |d| d.to_string()),
            opt(o.slow_all_dropped_secs),
            o.slow_closed,
            addrs,
        )
    }
}
