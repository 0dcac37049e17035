//! Wall-clock readings for the loop: the local `HH:MM:SS` of chat timestamps and
//! the HTTP `Date`, each formatted at most once per second.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::proto::chat::Stamp;
use crate::proto::http::response::http_date;

/// Local-time offset (found once at start-up) and per-second caches.
#[derive(Debug)]
pub struct Clock {
    offset_secs: i64,
    date_secs: u64,
    date: String,
}

impl Clock {
    /// Reads the local UTC offset. It must run before any other thread exists
    /// (the offset lookup refuses to run in a multi-threaded process); otherwise,
    /// or when the zone is unknown, timestamps are UTC.
    pub fn new() -> Clock {
        let offset_secs = time::UtcOffset::current_local_offset()
            .map(|o| i64::from(o.whole_seconds()))
            .unwrap_or(0);
        Clock {
            offset_secs,
            date_secs: 0,
            date: http_date(0),
        }
    }

    /// The current local time of day.
    pub fn stamp(&self) -> Stamp {
        let secs = i64::try_from(unix_secs()).unwrap_or(0) + self.offset_secs;
        let day = secs.rem_euclid(86_400);
        let (h, m, s) = (day / 3600, day % 3600 / 60, day % 60);
        Stamp::from_hms(h as u8, m as u8, s as u8)
    }

    /// The current HTTP `Date` value.
    pub fn http_date(&mut self) -> &str {
        let now = unix_secs();
        if now != self.date_secs {
            self.date_secs = now;
            self.date = http_date(now);
        }
        &self.date
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
