//! A cron expression read in a time zone, and the fire times it gives.
//!
//! Expressions have five fields (minute, hour, day of month, month, day of week) or six
//! with seconds first, plus croner's extensions (`L`, `W`, `#`, names like `MON` and
//! `JAN`, `@hourly`-style nicknames). A day of month and a day of week both restricted
//! match either (as Vixie cron does). Times are read in an IANA time zone, with daylight
//! saving handled as croner does it (OCPS): a wall-clock time skipped by a jump forward
//! fires at the first instant after the gap, one repeated by a jump back fires once.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Longest expression accepted.
const MAX_EXPRESSION_BYTES: usize = 256;

/// Why an expression or a time zone cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The expression does not parse.
    #[error("invalid cron expression {expression:?}: {reason}")]
    InvalidCron {
        /// The expression.
        expression: String,
        /// What the parser said.
        reason: String,
    },
    /// The expression parses but matches no time from now on (`0 0 30 2 *`).
    #[error("cron expression {0:?} never fires")]
    NeverFires(String),
    /// Not an IANA time zone name.
    #[error(
        "unknown time zone {0:?}: use an IANA name such as UTC, Europe/Paris or America/New_York"
    )]
    InvalidTimeZone(String),
}

/// A parsed expression and its time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    zone: Tz,
}

impl CronSpec {
    /// Read `expression` in `time_zone`, and check that it fires at least once after
    /// `now_ms`.
    pub fn parse(expression: &str, time_zone: &str, now_ms: u64) -> Result<Self, SpecError> {
        let zone = Tz::from_str(time_zone)
            .map_err(|_| SpecError::InvalidTimeZone(time_zone.to_owned()))?;
        let invalid = |reason: String| SpecError::InvalidCron {
            expression: expression.to_owned(),
            reason,
        };
        if expression.len() > MAX_EXPRESSION_BYTES {
            return Err(invalid(format!("longer than {MAX_EXPRESSION_BYTES} bytes")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| invalid(e.to_string()))?;
        let spec = Self { cron, zone };
        if spec.next_after(now_ms).is_none() {
            return Err(SpecError::NeverFires(expression.to_owned()));
        }
        Ok(spec)
    }

    /// The first fire time strictly after `after_ms` (Unix milliseconds), or `None`
    /// when there is none (within croner's search limit).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = self.at(after_ms)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// `ms` as a date and time in this spec's zone.
    fn at(&self, ms: u64) -> Option<DateTime<Tz>> {
        let ms = i64::try_from(ms).ok()?;
        self.zone.timestamp_millis_opt(ms).single()
    }
}

/// `ms` (Unix milliseconds) as an RFC 3339 date and time in `time_zone`
/// (`2026-11-26T09:00:00+01:00`); `None` for a zone that is not IANA's or an
/// unrepresentable time.
pub fn local_time(ms: u64, time_zone: &str) -> Option<String> {
    let zone = Tz::from_str(time_zone).ok()?;
    let at = zone
        .timestamp_millis_opt(i64::try_from(ms).ok()?)
        .single()?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01T00:00:00Z.
    const MARCH_2026: u64 = 1_772_323_200_000;

    fn ms(rfc3339: &str) -> u64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("a date")
            .timestamp_millis() as u64
    }

    #[test]
    fn seconds_are_optional_and_sub_second_times_round_up() {
        let every_second = CronSpec::parse("* * * * * *", "UTC", MARCH_2026).unwrap();
        assert_eq!(every_second.next_after(MARCH_2026), Some(MARCH_2026 + 1000));
        assert_eq!(
            every_second.next_after(MARCH_2026 + 1),
            Some(MARCH_2026 + 1000)
        );
        assert_eq!(
            every_second.next_after(MARCH_2026 + 999),
            Some(MARCH_2026 + 1000)
        );
        let every_minute = CronSpec::parse("* * * * *", "UTC", MARCH_2026).unwrap();
        assert_eq!(
            every_minute.next_after(MARCH_2026 + 1),
            Some(MARCH_2026 + 60_000)
        );
        let nickname = CronSpec::parse("@daily", "UTC", MARCH_2026).unwrap();
        assert_eq!(
            nickname.next_after(MARCH_2026),
            Some(MARCH_2026 + 86_400_000)
        );
    }

    #[test]
    fn the_time_zone_decides_when_nine_o_clock_is() {
        let paris = CronSpec::parse("0 0 9 * * *", "Europe/Paris", MARCH_2026).unwrap();
        assert_eq!(
            paris.next_after(MARCH_2026),
            Some(ms("2026-03-01T09:00:00+01:00"))
        );
        let new_york = CronSpec::parse("0 9 * * *", "America/New_York", MARCH_2026).unwrap();
        assert_eq!(
            new_york.next_after(MARCH_2026),
            Some(ms("2026-03-01T09:00:00-05:00"))
        );
        // New York moves to daylight saving time on 2026-03-08: 09:00 is then UTC-4.
        assert_eq!(
            new_york.next_after(ms("2026-03-08T00:00:00Z")),
            Some(ms("2026-03-08T09:00:00-04:00"))
        );
        // 02:30 does not exist that night; the run comes right after the gap.
        let gap = CronSpec::parse("30 2 * * *", "America/New_York", MARCH_2026).unwrap();
        assert_eq!(
            gap.next_after(ms("2026-03-08T06:00:00Z")),
            Some(ms("2026-03-08T03:00:00-04:00"))
        );
        assert_eq!(
            local_time(ms("2026-03-01T14:00:00Z"), "America/New_York").as_deref(),
            Some("2026-03-01T09:00:00-05:00")
        );
        assert_eq!(
            local_time(0, "UTC").as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(local_time(0, "Mars/Olympus"), None);
    }

    #[test]
    fn bad_expressions_and_zones_are_told_apart() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "every day",
            "*/0 * * * *",
        ] {
            assert!(
                matches!(
                    CronSpec::parse(bad, "UTC", MARCH_2026),
                    Err(SpecError::InvalidCron { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            CronSpec::parse(&"1,".repeat(200), "UTC", MARCH_2026),
            Err(SpecError::InvalidCron { .. })
        ));
        assert_eq!(
            CronSpec::parse("0 0 30 2 *", "UTC", MARCH_2026).unwrap_err(),
            SpecError::NeverFires("0 0 30 2 *".into())
        );
        for zone in ["Mars/Olympus", "", "utc+1", "europe/paris"] {
            assert_eq!(
                CronSpec::parse("* * * * *", zone, MARCH_2026).unwrap_err(),
                SpecError::InvalidTimeZone(zone.into()),
                "{zone:?}"
            );
        }
    }
}
