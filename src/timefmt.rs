//! Wire times: `YYYY-MM-DD HH:MM:SS` in the configured zone; unix milliseconds inside.

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

const FMT: &str = "%Y-%m-%d %H:%M:%S";

/// Formats unix milliseconds for the wire.
pub fn wire(ms: i64, tz: Tz) -> String {
    match tz.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format(FMT).to_string(),
        _ => String::new(),
    }
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
        assert_eq!(parse("2017-08-07 16:32:20", tz), Some(ms));
        assert_eq!(parse("2017-13-07 16:32:20", tz), None);
        assert_eq!(parse("yesterday", tz), None);
    }
}
