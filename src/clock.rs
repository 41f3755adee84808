//! Time as the broker's timers see it: the system clock, or a test clock that starts at the
//! real time and moves only when told (`--test-clock`; `Broker::advance_clock`). Message and
//! queue TTL, x-expires, x-delay, consumer_timeout and the timestamps Warren sets read it;
//! heartbeats and socket timeouts stay on real time. A leaf: every layer may read it.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Clock {
    /// Some: a test clock at this time (ms since the epoch).
    test: Option<AtomicU64>,
}

/// The system's time, in ms since the epoch.
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Clock {
    pub fn system() -> Clock {
        Clock { test: None }
    }

    /// A test clock, starting now.
    pub fn test() -> Clock {
        Clock {
            test: Some(AtomicU64::new(system_ms())),
        }
    }

    pub fn is_test(&self) -> bool {
        self.test.is_some()
    }

    pub fn now_ms(&self) -> u64 {
        match &self.test {
            Some(t) => t.load(Ordering::Acquire),
            None => system_ms(),
        }
    }

    /// Move a test clock to `ms` (never backwards); false for the system clock.
    pub fn set(&self, ms: u64) -> bool {
        match &self.test {
            Some(t) => {
                t.fetch_max(ms, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

/// "2030-01-01T00:00:00Z" (or with a fraction, or "+00:00") in ms since the epoch.
pub fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let (h, min, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    let ms_frac: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + h * 3600 + min * 60 + sec) * 1000).checked_add(ms_frac)?;
    u64::try_from(ms).ok()
}

/// The time the shovel and federation status APIs show, as RabbitMQ's `timestamp`:
/// "2026-11-30 8:39:55" (UTC, the hour not padded).
pub fn format_status_time(ms: u64) -> String {
    let t = format_rfc3339_utc(ms);
    let (date, time) = t.split_once('T').unwrap_or((&t, ""));
    let time = time.split('.').next().unwrap_or_default();
    format!("{date} {}", time.strip_prefix('0').unwrap_or(time))
}

/// ms since the epoch as "2030-01-01T00:00:00.000Z".
pub fn format_rfc3339_utc(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// "90m", "1h", "30s", "250ms", "2d", or a number of ms.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_forward_when_told() {
        let c = Clock::test();
        let t = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(c.now_ms(), t);
        assert!(c.set(t + 1000));
        assert!(c.set(t));
        assert_eq!(c.now_ms(), t + 1000);
        assert!(!Clock::system().set(0));
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2030-01-01T00:00:00Z"),
            Some(1_893_456_000_000)
        );
        assert_eq!(
            parse_rfc3339_utc("2030-01-01T00:00:01.5Z"),
            Some(1_893_456_001_500)
        );
        assert_eq!(parse_rfc3339_utc("yesterday"), None);
        assert_eq!(
            format_rfc3339_utc(1_893_456_001_500),
            "2030-01-01T00:00:01.500Z"
        );
        assert_eq!(
            parse_rfc3339_utc(&format_rfc3339_utc(123_456_789)),
            Some(123_456_789)
        );
        assert_eq!(parse_duration_ms("90m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("1y"), None);
    }
}
