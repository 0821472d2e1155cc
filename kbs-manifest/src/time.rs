//! ISO-8601 UTC timestamps (`created_at`, `completed_at`, the checkpoint's `timestamp`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManifestError;

const MILLIS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z in Unix milliseconds.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z in Unix milliseconds.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// An ISO-8601 (RFC 3339) UTC timestamp such as `"2026-11-21T06:19:44.123Z"`.
///
/// Accepted form: `YYYY-MM-DDTHH:MM:SS`, optionally `.` and 1 to 9 fraction digits, then
/// `Z`. Upper-case `T` and `Z` only, no other offsets, no leap second (`:60`), years
/// 0000–9999. The original text is kept, so a parsed document re-serialises unchanged;
/// equality compares the text. [`from_unix_millis`](Self::from_unix_millis) writes
/// exactly 3 fraction digits.
///
/// ```
/// use kbs_manifest::UtcTimestamp;
///
/// let t = UtcTimestamp::from_unix_millis(1_795_241_984_123).unwrap();
/// assert_eq!(t.as_str(), "2026-11-21T06:19:44.123Z");
/// let parsed: UtcTimestamp = "2026-11-21T06:19:44.123456Z".parse().unwrap();
/// assert_eq!(parsed.unix_millis(), 1_795_241_984_123);
/// assert!("2026-11-21 06:19:44Z".parse::<UtcTimestamp>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UtcTimestamp {
    text: String,
    unix_millis: i64,
}

impl UtcTimestamp {
    /// Formats a Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    ///
    /// The caller reads the clock (e.g. `SystemTime::now()`); this crate never does.
    pub fn from_unix_millis(unix_millis: i64) -> Result<Self, ManifestError> {
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&unix_millis) {
            return Err(ManifestError::TimestampOutOfRange { unix_millis });
        }
        let days = unix_millis.div_euclid(MILLIS_PER_DAY);
        let ms_of_day = unix_millis.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let text = format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
            ms_of_day % 1000
        );
        Ok(UtcTimestamp { text, unix_millis })
    }

    /// Milliseconds since the Unix epoch (fraction digits beyond milliseconds are dropped).
    pub fn unix_millis(&self) -> i64 {
        self.unix_millis
    }

    /// The timestamp text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The UTC calendar date: (year, month 1–12, day 1–31).
    ///
    /// ```
    /// let t: kbs_manifest::UtcTimestamp = "2026-11-30T23:59:59.999Z".parse()?;
    /// assert_eq!(t.date(), (2026, 11, 30));
    /// # Ok::<(), kbs_manifest::ManifestError>(())
    /// ```
    pub fn date(&self) -> (i64, u32, u32) {
        let (year, month, day) = civil_from_days(self.unix_millis.div_euclid(MILLIS_PER_DAY));
        (year, month as u32, day as u32)
    }

    /// The ISO 8601 week: (week-numbering year, week 1–53). Weeks start on Monday, and a week
    /// belongs to the year of its Thursday.
    ///
    /// ```
    /// let t: kbs_manifest::UtcTimestamp = "2027-01-01T00:00:00Z".parse()?; // a Friday
    /// assert_eq!(t.iso_week(), (2026, 53));
    /// # Ok::<(), kbs_manifest::ManifestError>(())
    /// ```
    pub fn iso_week(&self) -> (i64, u32) {
        let days = self.unix_millis.div_euclid(MILLIS_PER_DAY);
        let monday_based = (days + 3).rem_euclid(7); // 1970-01-01 was a Thursday
        let thursday = days - monday_based + 3;
        let (year, _, _) = civil_from_days(thursday);
        (year, ((thursday - days_from_civil(year, 1, 1)) / 7 + 1) as u32)
    }
}

impl fmt::Debug for UtcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for UtcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for UtcTimestamp {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unix_millis = parse_millis(s.as_bytes()).map_err(|reason| ManifestError::InvalidTimestamp {
            value: s.to_owned(),
            reason,
        })?;
        Ok(UtcTimestamp {
            text: s.to_owned(),
            unix_millis,
        })
    }
}

impl Serialize for UtcTimestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for UtcTimestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        value.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses the accepted form into Unix milliseconds.
fn parse_millis(b: &[u8]) -> Result<i64, &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction]Z";
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(SHAPE);
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        b[range].iter().try_fold(0i64, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + i64::from(c - b'0'))
            } else {
                Err(SHAPE)
            }
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut millis = 0;
    let rest = &b[19..];
    let rest = match rest.first() {
        Some(b'.') => {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return Err("expected 1 to 9 fraction digits after '.'");
            }
            for (i, &c) in rest[1..=digits].iter().enumerate().take(3) {
                millis += i64::from(c - b'0') * [100, 10, 1][i];
            }
            &rest[1 + digits..]
        }
        _ => rest,
    };
    if rest != b"Z" {
        return Err("expected the UTC designator 'Z' at the end");
    }
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range");
    }
    let days = days_from_civil(year, month, day);
    Ok(days * MILLIS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_and_iso_weeks() {
        let at = |text: &str| text.parse::<UtcTimestamp>().unwrap();
        assert_eq!(at("2026-11-30T12:00:00Z").iso_week(), (2026, 49)); // a Monday
        assert_eq!(at("2026-11-29T23:59:59Z").iso_week(), (2026, 48)); // a Sunday
        assert_eq!(at("2021-01-03T00:00:00Z").iso_week(), (2020, 53));
        assert_eq!(at("2024-12-30T00:00:00Z").iso_week(), (2025, 1));
        assert_eq!(at("1970-01-01T00:00:00Z").iso_week(), (1970, 1));
        assert_eq!(at("2000-02-29T10:00:00Z").date(), (2000, 2, 29));
        for days in [-700_000, -1, 0, 59, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn known_values() {
        let cases = [
            ("1970-01-01T00:00:00.000Z", 0),
            ("1969-12-31T23:59:59.999Z", -1),
            ("2000-02-29T12:00:00.000Z", 951_825_600_000),
            ("2026-11-21T06:19:44.123Z", 1_795_241_984_123),
            ("0000-01-01T00:00:00.000Z", MIN_MILLIS),
            ("9999-12-31T23:59:59.999Z", MAX_MILLIS),
        ];
        for (text, millis) in cases {
            let t = UtcTimestamp::from_unix_millis(millis).unwrap();
            assert_eq!(t.as_str(), text);
            assert_eq!(text.parse::<UtcTimestamp>().unwrap().unix_millis(), millis);
        }
        assert!(UtcTimestamp::from_unix_millis(MIN_MILLIS - 1).is_err());
        assert!(UtcTimestamp::from_unix_millis(MAX_MILLIS + 1).is_err());
        assert!(UtcTimestamp::from_unix_millis(i64::MIN).is_err());
        assert!(UtcTimestamp::from_unix_millis(i64::MAX).is_err());
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            "2026-11-21T06:19:44Z".parse::<UtcTimestamp>().unwrap().unix_millis(),
            1_795_241_984_000
        );
        assert_eq!(
            "2026-11-21T06:19:44.1Z".parse::<UtcTimestamp>().unwrap().unix_millis(),
            1_795_241_984_100
        );
        assert_eq!(
            "2026-11-21T06:19:44.123456789Z"
                .parse::<UtcTimestamp>()
                .unwrap()
                .unix_millis(),
            1_795_241_984_123
        );
        assert!("2024-02-29T00:00:00Z".parse::<UtcTimestamp>().is_ok());
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "2026-11-21",
            "2026-11-21T06:19:44",
            "2026-11-21T06:19:44+00:00",
            "2026-11-21t06:19:44z",
            "2026-11-21T06:19:44.Z",
            "2026-11-21T06:19:44.1234567890Z",
            "2026-11-21T06:19:60Z",
            "2026-11-21T24:00:00Z",
            "2026-13-21T06:19:44Z",
            "2026-00-21T06:19:44Z",
            "2025-02-29T06:19:44Z",
            "2026-11-31T06:19:44Z",
            "+2026-11-21T06:19:44Z",
            "2026-11-21T06:19:44ZZ",
            "２026-11-21T06:19:44Z",
            "2026-11-21T06:19:4éZ",
        ] {
            assert!(bad.parse::<UtcTimestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        let mut days = -719_528; // 0000-01-01
        while days <= 2_932_896 {
            // 9999-12-31
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            days += 1;
        }
    }
}
