//! Runs one load over one or more generator threads (`--threads`) and merges
//! their outcomes into one, plus the `/stats` poller thread with
//! `--stats-addr`.
//!
//! How it works: thread t (0..T) runs its own [`Load`] over the clients
//! `i` with `i mod T` = t; thread 0 is the calling thread and the only one
//! that calls the probes (server RSS, all joined). With one thread its
//! outcome is returned as it is. With several, counts are summed, latency
//! histograms merged, times take the longest thread's, and the same-order
//! check is made again over every receiver's fingerprint (each from the
//! thread that owns it): every receiver is owed every broadcast, as
//! `--threads` excludes private messages and rooms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::driver::{ABORTED, Ending, Load, Outcome};
use crate::opts::Options;
use crate::order;
use crate::shared::Shared;
use crate::stats;

/// Runs the load described by `opts` to its end.
pub fn run(
    opts: &Options,
    probe: &mut dyn FnMut(),
    on_joined: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    let shared = Arc::new(Shared::new(opts.threads, opts.senders));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let poller = opts.stats_addr.map(|addr| {
            let shared = Arc::clone(&shared);
            let stop = &stop;
            scope.spawn(move || stats::poll(addr, &shared, stop))
        });
        let others: Vec<_> = (1..shared.threads)
            .map(|t| {
                let (opts, shared) = (opts.clone(), Arc::clone(&shared));
                scope.spawn(move || one(opts, shared, t, &mut || {}, &mut || {}))
            })
            .collect();
        let first = one(opts.clone(), Arc::clone(&shared), 0, probe, on_joined);
        let rest: Vec<Result<Outcome, String>> = others
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a generator thread panicked".into()))
            })
            .collect();
        stop.store(true, Ordering::Release);
        if let Some(p) = poller {
            let _ = p.join();
        }
        // The first real failure, not another thread's giving up because of it.
        let mut errors: Vec<String> = Vec::new();
        let mut ok = Vec::with_capacity(rest.len());
        for r in rest {
            match r {
                Ok(o) => ok.push(o),
                Err(e) => errors.push(e),
            }
        }
        let first = match first {
            Ok(o) if errors.is_empty() => o,
            Ok(_) => return Err(pick(errors)),
            Err(e) => {
                errors.insert(0, e);
                return Err(pick(errors));
            }
        };
        Ok(merge(first, ok, &shared))
    })
}

/// The first error that is not a thread giving up because another failed.
fn pick(errors: Vec<String>) -> String {
    let first = errors.first().cloned().unwrap_or_default();
    errors.into_iter().find(|e| e != ABORTED).unwrap_or(first)
}

/// Thread `t`'s load; a failure to set it up tells the others to give up.
fn one(
    opts: Options,
    shared: Arc<Shared>,
    t: usize,
    probe: &mut dyn FnMut(),
    on_joined: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    match Load::part(opts, Arc::clone(&shared), t) {
        Ok(load) => load.run(probe, on_joined),
        Err(e) => {
            shared.abort();
            Err(format!("cannot set up the poll loop: {e}"))
        }
    }
}

/// One outcome from thread 0's and the others' (in thread order).
fn merge(first: Outcome, rest: Vec<Outcome>, shared: &Shared) -> Outcome {
    let threads = rest.len() + 1;
    let mut all = first;
    if threads == 1 {
        return all;
    }
    for (t, p) in rest.into_iter().enumerate() {
        let t = t + 1;
        all.ending = worse(all.ending, p.ending);
        all.joined += p.joined;
        all.messages_sent = all.messages_sent.max(p.messages_sent);
        all.expected += p.expected;
        all.deliveries += p.deliveries;
        all.lost += p.lost;
        all.duplicated += p.duplicated;
        all.reordered += p.reordered;
        all.skipped += p.skipped;
        all.unexpected += p.unexpected;
        all.misdelivered += p.misdelivered;
        all.first_misdelivery = all.first_misdelivery.take().or(p.first_misdelivery);
        all.disconnected += p.disconnected;
        all.server_errors += p.server_errors;
        all.first_server_error = all.first_server_error.take().or(p.first_server_error);
        all.private_sent += p.private_sent;
        all.private_delivered += p.private_delivered;
        all.private_confirmed += p.private_confirmed;
        all.connect_secs = all.connect_secs.max(p.connect_secs);
        all.send_secs = all.send_secs.max(p.send_secs);
        all.delivery_secs = all.delivery_secs.max(p.delivery_secs);
        all.latency.merge(&p.latency);
        for (a, b) in all.addrs.iter_mut().zip(&p.addrs) {
            a.1 += b.1;
        }
        for (a, b) in all.ws_addrs.iter_mut().zip(&p.ws_addrs) {
            a.1 += b.1;
        }
        // Receiver i's fingerprint and state are its owner's.
        for i in (t..all.fingerprints.len()).step_by(threads) {
            if let (Some(a), Some(b)) = (all.fingerprints.get_mut(i), p.fingerprints.get(i)) {
                *a = *b;
            }
            if let (Some(a), Some(b)) = (all.connected.get_mut(i), p.connected.get(i)) {
                *a = *b;
            }
        }
        all.slow_joined += p.slow_joined;
        all.slow_closed += p.slow_closed;
        all.slow_dropped = all.slow_dropped.max(p.slow_dropped);
        all.slow_all_dropped_secs = match (all.slow_all_dropped_secs, p.slow_all_dropped_secs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let owed: u64 = shared.sent_all().map(u64::from).sum();
    all.order = order::compare(
        &all.fingerprints,
        |_| 0,
        |_| owed,
        |i| all.connected.get(i).copied().unwrap_or(false),
    );
    all
}

/// The worse of two endings: timed out, then stalled, then complete.
fn worse(a: Ending, b: Ending) -> Ending {
    let rank = |e: Ending| match e {
        Ending::Complete => 0,
        Ending::Stalled => 1,
        Ending::TimedOut => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}
