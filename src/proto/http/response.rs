//! HTTP/1.1 response heads (RFC 9112 §4, §6), error responses and dates.
//!
//! Owns: the status line, the fields every response carries, reason phrases
//! and the IMF-fixdate format. The body is never copied into the head: it is
//! an `Rc<[u8]>` that the loop queues as a second chunk, so one static file is
//! shared by every response that sends it. Must not know about sockets,
//! connections or the clock (the date string is an argument).

use std::fmt::Write as _;
use std::rc::Rc;

use super::request::Method;

/// A response: status, extra header fields and the body (shared, not copied).
///
/// `headers` are written in order after the fields [`encode_head`] always
/// adds; they must not repeat `Date`, `Content-Length` or `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Rc<[u8]>,
}

impl Response {
    /// Looks up the first header field called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Encodes the status line and header block, ending with the blank line.
///
/// Always written: `Date`, `Content-Length` (the body length; left out for
/// statuses without content, RFC 9110 §8.6: a 304's length would have to be
/// the 200's, and 1xx/204 must not have one), `Connection: keep-alive` or
/// `close`, `X-Content-Type-Options: nosniff`, then `resp.headers` in order.
/// A header value containing CR or LF is dropped rather than split the head.
///
/// The body is not included. The caller sends it after the head, except for
/// HEAD requests and statuses where [`status_has_body`] is false.
pub fn encode_head(resp: &Response, keep_alive: bool, date: &str) -> Vec<u8> {
    let extra: usize = resp
        .headers
        .iter()
        .map(|(n, v)| n.len().saturating_add(v.len()).saturating_add(4))
        .sum();
    let mut head = String::with_capacity(160usize.saturating_add(extra));
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nDate: {}\r\n",
        resp.status,
        reason(resp.status),
        date
    );
    if status_has_body(resp.status) {
        let _ = write!(head, "Content-Length: {}\r\n", resp.body.len());
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    head.push_str("X-Content-Type-Options: nosniff\r\n");
    for (name, value) in &resp.headers {
        // RFC 9110 §5.5: field values never contain CR or LF.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A small `text/plain` response for `status`, e.g. `"404 Not Found\n"`.
/// A 405 carries `Allow: GET, HEAD` (RFC 9110 §15.5.6). Statuses without
/// content get an empty body.
pub fn error(status: u16) -> Response {
    let mut headers = vec![
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
        ("Cache-Control", "no-store".to_owned()),
    ];
    if status == 405 {
        headers.push(("Allow", "GET, HEAD".to_owned()));
    }
    let body: Rc<[u8]> = if status_has_body(status) {
        Rc::from(format!("{status} {}\n", reason(status)).into_bytes())
    } else {
        Rc::from(Vec::new())
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The reason phrase for `status` (RFC 9110 §15), empty for unknown codes
/// (RFC 9112 §4 allows an empty reason phrase).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether a response with this status carries content (RFC 9110 §6.4.1):
/// false for 1xx, 204 and 304.
pub fn status_has_body(status: u16) -> bool {
    !matches!(status, 100..=199 | 204 | 304)
}

/// Whether the body follows the head on the wire: never for HEAD (RFC 9110
/// §9.3.2: same fields as GET, no content) nor for 1xx/204/304.
pub fn sends_body(method: &Method, status: u16) -> bool {
    *method != Method::Head && status_has_body(status)
}

/// Formats seconds since the Unix epoch as an IMF-fixdate (RFC 9110 §5.6.7),
/// e.g. `"Sun, 06 Nov 1994 08:49:37 GMT"`.
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month_name = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar. Counts in 400-year eras of 146 097 days, each starting
/// on a 1 March so the leap day falls at the end of the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 0000-03-01 is 719 468 days before 1970-01-01. `days` is at most
    // u64::MAX / 86 400, so this cannot overflow.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097; // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // 0..=399
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // 0..=365
    let mp = (5 * day_of_year + 2) / 153; // month from March: 0..=11
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &[u8]) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", "text/html; charset=utf-8".into()),
                ("ETag", "\"abc\"".into()),
            ],
            body: Rc::from(body),
        }
    }

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn encodes_head_byte_for_byte() {
        let head = encode_head(&response(200, b"hello"), true, DATE);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Length: 5\r\n\
             Connection: keep-alive\r\n\
             X-Content-Type-Options: nosniff\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             ETag: \"abc\"\r\n\
             \r\n"
        );
    }

    #[test]
    fn encodes_close_and_leaves_out_length_for_304() {
        let head = encode_head(&response(304, b""), false, DATE);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 304 Not Modified\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Connection: close\r\n\
             X-Content-Type-Options: nosniff\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             ETag: \"abc\"\r\n\
             \r\n"
        );
    }

    #[test]
    fn drops_header_values_with_line_breaks() {
        let mut resp = response(200, b"");
        resp.headers = vec![
            ("X-Evil", "a\r\nSet-Cookie: x".into()),
            ("X-Ok", "b".into()),
        ];
        let head = String::from_utf8(encode_head(&resp, true, DATE)).unwrap();
        assert!(!head.contains("Set-Cookie"));
        assert!(head.ends_with("X-Ok: b\r\n\r\n"));
        assert!(head.contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn error_responses() {
        let resp = error(404);
        assert_eq!(resp.status, 404);
        assert_eq!(&*resp.body, b"404 Not Found\n");
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(resp.header("Allow"), None);
        let resp = error(405);
        assert_eq!(&*resp.body, b"405 Method Not Allowed\n");
        assert_eq!(resp.header("Allow"), Some("GET, HEAD"));
        assert_eq!(&*error(431).body, b"431 Request Header Fields Too Large\n");
        assert!(error(304).body.is_empty());
        assert_eq!(
            String::from_utf8(encode_head(&error(400), false, DATE)).unwrap(),
            "HTTP/1.1 400 Bad Request\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Length: 16\r\n\
             Connection: close\r\n\
             X-Content-Type-Options: nosniff\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Cache-Control: no-store\r\n\
             \r\n"
        );
    }

    #[test]
    fn reasons_and_bodies() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(413), "Content Too Large");
        assert_eq!(reason(505), "HTTP Version Not Supported");
        assert_eq!(reason(799), "");
        assert!(status_has_body(200));
        assert!(status_has_body(404));
        assert!(!status_has_body(101));
        assert!(!status_has_body(204));
        assert!(!status_has_body(304));
    }

    #[test]
    fn head_and_304_send_no_body() {
        assert!(sends_body(&Method::Get, 200));
        assert!(sends_body(&Method::Get, 404));
        assert!(!sends_body(&Method::Head, 200));
        assert!(!sends_body(&Method::Get, 304));
        assert!(sends_body(&Method::Other("POST".into()), 405));
    }

    #[test]
    fn formats_known_dates() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 GMT"),
            (978_307_199, "Sun, 31 Dec 2000 23:59:59 GMT"),
            (1_234_567_890, "Fri, 13 Feb 2009 23:31:30 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, want) in cases {
            assert_eq!(http_date(secs), want, "{secs}");
        }
    }

    #[test]
    fn date_does_not_overflow() {
        assert!(http_date(u64::MAX).ends_with(" GMT"));
    }
}
