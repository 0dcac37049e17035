//! Wall-clock helpers for the loop: the local zone's offset from UTC (read
//! once, for the encoders' `HH:MM:SS` stamps) and the HTTP `Date`, formatted
//! at most once per second. The loop reads the time itself, once per turn.

use crate::proto::http::response::http_date;

/// Local-time offset (found once at start-up) and the `Date` cache.
#[derive(Debug)]
pub struct Clock {
    offset_secs: i32,
    date_secs: u64,
    date: String,
}

impl Clock {
    /// Reads the local UTC offset. It must run before any other thread exists
    /// (the offset lookup refuses to run in a multi-threaded process); otherwise,
    /// or when the zone is unknown, timestamps are UTC.
    pub fn new() -> Clock {
        let offset_secs = time::UtcOffset::current_local_offset()
            .map(|o| o.whole_seconds())
            .unwrap_or(0);
        Clock {
            offset_secs,
            date_secs: 0,
            date: http_date(0),
        }
    }

    /// Seconds east of UTC of the local zone.
    pub fn offset_secs(&self) -> i32 {
        self.offset_secs
    }

    /// The HTTP `Date` value for `unix_secs`.
    pub fn http_date(&mut self, unix_secs: u64) -> &str {
        if unix_secs != self.date_secs {
            self.date_secs = unix_secs;
            self.date = http_date(unix_secs);
        }
        &self.date
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
