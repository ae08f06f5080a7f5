//! Wire times: `YYYY-MM-DD HH:MM:SS` in the configured zone; unix milliseconds inside.

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

const FMT: &str = "%Y-%m-%d %H:%M:%S";

/// Formats unix milliseconds for the wire. Polling kiosks ask for "now" thousands of
/// times a second, so each thread keeps the last second it formatted.
pub fn wire(ms: i64, tz: Tz) -> String {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(i64, Tz, String)>> = const { RefCell::new(None) };
    }
    let sec = ms.div_euclid(1000);
    LAST.with(|cell| {
        if let Some((s, z, text)) = &*cell.borrow()
            && *s == sec
            && *z == tz
        {
            return text.clone();
        }
        let text = match tz.timestamp_opt(sec, 0) {
            chrono::LocalResult::Single(t) => t.format(FMT).to_string(),
            _ => String::new(),
        };
        *cell.borrow_mut() = Some((sec, tz, text.clone()));
        text
    })
}

/// Parses a wire time into unix milliseconds.
pub fn parse(s: &str, tz: Tz) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), FMT).ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_shanghai() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 2017-08-07 08:32:20 UTC
        let ms = 1_502_094_740_000;
        assert_eq!(wire(ms, tz), "2017-08-07 16:32:20");
        assert_eq!(wire(ms + 999, tz), "2017-08-07 16:32:20");
        assert_eq!(wire(ms + 1000, tz), "2017-08-07 16:32:21");
        assert_eq!(wire(ms, chrono_tz::UTC), "2017-08-07 08:32:20");
        assert_eq!(parse("2017-08-07 16:32:20", tz), Some(ms));
        assert_eq!(parse("2017-13-07 16:32:20", tz), None);
        assert_eq!(parse("yesterday", tz), None);
    }
}
