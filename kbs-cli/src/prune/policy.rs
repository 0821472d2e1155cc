//! Which backups a retention policy keeps: restic's `forget` rules, which operators know.
//!
//! The rules look at complete backups only, newest first, by the time each backup started
//! (`created_at`, UTC):
//!
//! * `keep_last N`: the N newest;
//! * `keep_within D`: those that started within D before the newest one started;
//! * `keep_daily N`, `keep_weekly N`, `keep_monthly N`: the newest backup of each of the N
//!   newest days (weeks: ISO 8601, Monday to Sunday; months) that have backups.
//!
//! A backup any rule keeps is kept; every reason is reported. The newest complete backup is
//! kept whatever the rules say unless the caller allows deleting it.

use std::time::Duration;

use serde::Serialize;

/// A retention policy (restic's `forget` rules). At least one rule must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the N newest backups.
    pub keep_last: Option<usize>,
    /// Keep backups that started within this long before the newest one.
    pub keep_within: Option<Duration>,
    /// Keep the newest backup of each of the N newest days with backups.
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the N newest ISO weeks with backups.
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the N newest months with backups.
    pub keep_monthly: Option<usize>,
    /// Allow deleting the newest complete backup when no rule keeps it.
    pub allow_deleting_newest: bool,
}

impl RetentionPolicy {
    /// Whether any rule is set.
    pub fn has_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_within.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }
}

/// A complete backup the rules judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The backup id.
    pub backup_id: String,
    /// When it started (Unix ms).
    pub created_at_ms: i64,
}

/// The rules' verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The backup id.
    pub backup_id: String,
    /// Kept or deleted.
    pub keep: bool,
    /// Why: every rule that keeps it, or why it is deleted.
    pub reasons: Vec<String>,
}

/// Applies `policy` to `candidates` (any order); verdicts come newest first.
pub fn apply(policy: &RetentionPolicy, candidates: &[Candidate]) -> Vec<Verdict> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    // Newest first; equal times by id, so the verdicts are deterministic.
    sorted.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.backup_id.cmp(&a.backup_id))
    });
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
    if let Some(n) = policy.keep_last {
        for (i, r) in reasons.iter_mut().enumerate().take(n) {
            r.push(format!("last {}", i + 1));
        }
    }
    if let (Some(within), Some(newest)) = (policy.keep_within, sorted.first()) {
        let since = newest.created_at_ms.saturating_sub(within.as_millis() as i64);
        for (c, r) in sorted.iter().zip(reasons.iter_mut()) {
            if c.created_at_ms >= since {
                r.push(format!("within {}", humantime::format_duration(within)));
            }
        }
    }
    let buckets: [(Option<usize>, &str, BucketOf); 3] = [
        (policy.keep_daily, "daily", day_of),
        (policy.keep_weekly, "weekly", iso_week_of),
        (policy.keep_monthly, "monthly", month_of),
    ];
    for (limit, name, bucket_of) in buckets {
        let Some(limit) = limit else { continue };
        let mut last_bucket: Option<String> = None;
        let mut kept = 0;
        for (c, r) in sorted.iter().zip(reasons.iter_mut()) {
            if kept >= limit {
                break;
            }
            let bucket = bucket_of(c.created_at_ms);
            if last_bucket.as_deref() != Some(bucket.as_str()) {
                r.push(format!("{name} {bucket}"));
                kept += 1;
                last_bucket = Some(bucket);
            }
        }
    }
    if !policy.allow_deleting_newest
        && let Some(first) = reasons.first_mut()
        && first.is_empty()
    {
        first.push("the newest complete backup (kept unless --delete-newest)".into());
    }
    sorted
        .iter()
        .zip(reasons)
        .map(|(c, reasons)| Verdict {
            backup_id: c.backup_id.clone(),
            keep: !reasons.is_empty(),
            reasons: if reasons.is_empty() {
                vec!["no rule keeps it".into()]
            } else {
                reasons
            },
        })
        .collect()
}

/// The calendar bucket (day, week, month) of a time in Unix ms.
type BucketOf = fn(i64) -> String;

fn timestamp(unix_ms: i64) -> kbs_manifest::UtcTimestamp {
    // Out-of-range times (before year 0 or after 9999) count as the earliest one.
    kbs_manifest::UtcTimestamp::from_unix_millis(unix_ms)
        .or_else(|_| kbs_manifest::UtcTimestamp::from_unix_millis(0))
        .expect("the epoch is in range")
}

fn day_of(unix_ms: i64) -> String {
    let (y, m, d) = timestamp(unix_ms).date();
    format!("{y:04}-{m:02}-{d:02}")
}

fn month_of(unix_ms: i64) -> String {
    let (y, m, _) = timestamp(unix_ms).date();
    format!("{y:04}-{m:02}")
}

/// The ISO 8601 week, e.g. `2026-W48`.
fn iso_week_of(unix_ms: i64) -> String {
    let (year, week) = timestamp(unix_ms).iso_week();
    format!("{year:04}-W{week:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-30T12:00:00Z, a Monday.
    const MONDAY: i64 = 1_796_040_000_000;

    fn candidates(times: &[(&str, i64)]) -> Vec<Candidate> {
        times
            .iter()
            .map(|(id, t)| Candidate {
                backup_id: (*id).into(),
                created_at_ms: *t,
            })
            .collect()
    }

    fn kept(verdicts: &[Verdict]) -> Vec<&str> {
        verdicts
            .iter()
            .filter(|v| v.keep)
            .map(|v| v.backup_id.as_str())
            .collect()
    }

    #[test]
    fn calendar_buckets() {
        assert_eq!(day_of(MONDAY), "2026-11-30");
        assert_eq!(month_of(MONDAY), "2026-11");
        assert_eq!(iso_week_of(MONDAY), "2026-W49");
        assert_eq!(iso_week_of(MONDAY - DAY), "2026-W48"); // Sunday
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(iso_week_of(0), "1970-W01");
        // 2027-01-01 is a Friday: ISO week 53 of 2026. 2021-01-03 (Sunday): week 53 of 2020.
        assert_eq!(iso_week_of(1_798_761_600_000), "2026-W53");
        assert_eq!(iso_week_of(1_609_632_000_000), "2020-W53");
        // 2024-12-30 (Monday): week 1 of 2025.
        assert_eq!(iso_week_of(1_735_516_800_000), "2025-W01");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn each_rule_keeps_what_restic_keeps() {
        // Two backups a day for ten days.
        let mut times = Vec::new();
        for d in 0..10 {
            times.push((format!("d{d}-am"), MONDAY - d * DAY - 3_600_000));
            times.push((format!("d{d}-pm"), MONDAY - d * DAY + 3_600_000));
        }
        let all: Vec<(&str, i64)> = times.iter().map(|(id, t)| (id.as_str(), *t)).collect();
        let c = candidates(&all);
        let policy = |p: RetentionPolicy| apply(&p, &c);
        let last = policy(RetentionPolicy {
            keep_last: Some(3),
            ..Default::default()
        });
        assert_eq!(kept(&last), ["d0-pm", "d0-am", "d1-pm"]);
        assert_eq!(last[0].reasons, ["last 1"]);
        let daily = policy(RetentionPolicy {
            keep_daily: Some(3),
            ..Default::default()
        });
        assert_eq!(kept(&daily), ["d0-pm", "d1-pm", "d2-pm"]);
        assert_eq!(daily[2].reasons, ["daily 2026-11-29"]);
        let within = policy(RetentionPolicy {
            keep_within: Some(Duration::from_secs(36 * 3600)),
            ..Default::default()
        });
        assert_eq!(kept(&within), ["d0-pm", "d0-am", "d1-pm", "d1-am"]);
        // Monday 2026-11-30 opens a week: d0 is week 49, d1..d7 week 48, d8 and d9 week 47.
        let weekly = policy(RetentionPolicy {
            keep_weekly: Some(2),
            ..Default::default()
        });
        assert_eq!(kept(&weekly), ["d0-pm", "d1-pm"]);
        let monthly = policy(RetentionPolicy {
            keep_monthly: Some(5),
            ..Default::default()
        });
        assert_eq!(kept(&monthly), ["d0-pm"]);
        // Rules add up, and each reason is given.
        let both = policy(RetentionPolicy {
            keep_last: Some(1),
            keep_daily: Some(2),
            ..Default::default()
        });
        assert_eq!(kept(&both), ["d0-pm", "d1-pm"]);
        assert_eq!(both[0].reasons, ["last 1", "daily 2026-11-30"]);
        assert_eq!(both[3].reasons, ["no rule keeps it"]);
    }

    #[test]
    fn the_newest_is_kept_unless_allowed() {
        let c = candidates(&[("old", MONDAY - DAY), ("new", MONDAY)]);
        let zero = RetentionPolicy {
            keep_last: Some(0),
            ..Default::default()
        };
        let verdicts = apply(&zero, &c);
        assert_eq!(kept(&verdicts), ["new"]);
        assert!(verdicts[0].reasons[0].contains("--delete-newest"));
        let allowed = RetentionPolicy {
            allow_deleting_newest: true,
            ..zero
        };
        assert!(kept(&apply(&allowed, &c)).is_empty());
        assert!(apply(&allowed, &[]).is_empty());
    }
}
