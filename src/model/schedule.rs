//! The sync schedule in VolSync's own cron dialect.
//!
//! VolSync's CRD admits a schedule by a regular expression whose second alternative is not
//! anchored (so it lets through e.g. six fields), then parses it with robfig/cron's
//! standard five-field parser plus `@descriptors`. A cron crate alone accepts more than
//! that (croner takes `L`, `W`, `#`, day and month names), so a schedule is accepted here
//! only when it passes both the per-field grammar of VolSync's regex, anchored, with the
//! numeric bounds robfig enforces, and croner, which computes the next run.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// What a schedule annotation may hold, for error messages.
pub const ACCEPTED: &str = "five cron fields (minute hour day-of-month month day-of-week, each \
     `*`, `*/N`, `N`, `N,M,...`, `N-M` or `N/M`) separated by single spaces, or one of \
     @hourly, @daily, @weekly, @monthly, @yearly, @annually";

const DESCRIPTORS: &[&str] = &["@annually", "@yearly", "@monthly", "@weekly", "@daily", "@hourly"];

/// (name, lowest, highest) per field, as robfig/cron bounds them.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
];

/// A validated schedule; displays as the text VolSync receives.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

/// Why a schedule was refused; the message says what part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl Schedule {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed form, for computing run times.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// The longest wait between two runs among 25 consecutive ones (a schedule whose runs are
    /// uneven, such as `0 9,17 * * *`, is judged by its longest gap). Read on every status
    /// report, so computed once per schedule text: from a fixed start, which 25 runs cover for
    /// every pattern VolSync's five fields can express, in UTC.
    pub fn longest_interval(&self) -> Option<std::time::Duration> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        type Gaps = HashMap<String, Option<std::time::Duration>>;
        static CACHE: OnceLock<Mutex<Gaps>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(gap) = cache.lock().ok().and_then(|c| c.get(&self.text).copied()) {
            return gap;
        }
        let from = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let runs: Vec<chrono::DateTime<chrono::Utc>> = self.cron.iter_after(from).take(25).collect();
        let gap = runs.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).max();
        if let Ok(mut c) = cache.lock() {
            if c.len() >= 256 {
                c.clear();
            }
            c.insert(self.text.clone(), gap);
        }
        gap
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Schedule {}

impl Default for Schedule {
    fn default() -> Self {
        DEFAULT
            .parse()
            .unwrap_or_else(|e| panic!("default schedule {DEFAULT:?} is invalid: {e}"))
    }
}

/// DESIGN.md's default: every ten minutes.
pub const DEFAULT: &str = "*/10 * * * *";

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with('@') {
            if !DESCRIPTORS.contains(&text) {
                return Err(ScheduleError(format!("unknown descriptor {text:?}")));
            }
        } else {
            check_fields(text)?;
        }
        let cron = parse_cached(text)?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }
}

fn check_fields(text: &str) -> Result<(), ScheduleError> {
    let fields: Vec<&str> = text.split(' ').collect();
    if fields.len() != 5 || fields.iter().any(|f| f.is_empty()) {
        return Err(ScheduleError(format!(
            "expected 5 fields separated by single spaces, found {}",
            text.split_whitespace().count()
        )));
    }
    for (field, (name, low, high)) in fields.iter().zip(FIELDS) {
        check_field(field, name, low, high)?;
    }
    Ok(())
}

/// Most recent croner parses. Parsing costs about 13 µs, half of an admission review, and a
/// cluster uses a handful of schedules; the answer for a text never changes, so remembering it
/// keeps the function pure in effect.
fn parse_cached(text: &str) -> Result<Cron, ScheduleError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    const MAX_ENTRIES: usize = 256;
    static CACHE: OnceLock<Mutex<HashMap<String, Cron>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(cron) = cache.lock().ok().and_then(|c| c.get(text).cloned()) {
        return Ok(cron);
    }
    let cron = parser()
        .parse(text)
        .map_err(|e| ScheduleError(format!("not a valid cron expression: {e}")))?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= MAX_ENTRIES {
            c.clear();
        }
        c.insert(text.to_string(), cron.clone());
    }
    Ok(cron)
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        // robfig reads `N/M` as "from N every M"; croner only does with sloppy ranges on.
        .sloppy_ranges(true)
        .build()
}

/// One field against VolSync's per-field grammar: `(\d+,)*\d+ | \d+(/|-)\d+ | \*(/\d+)?`.
fn check_field(field: &str, name: &str, low: u32, high: u32) -> Result<(), ScheduleError> {
    let bad = |why: &str| ScheduleError(format!("{name} field {field:?}: {why}"));
    let number = |s: &str| -> Result<u32, ScheduleError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("only digits, `*`, `,`, `-` and `/` are allowed"));
        }
        s.parse::<u32>().map_err(|_| bad("number too large"))
    };
    let in_range = |n: u32| -> Result<u32, ScheduleError> {
        if n < low || n > high {
            Err(bad(&format!("{n} is outside {low}-{high}")))
        } else {
            Ok(n)
        }
    };
    let positive_step = |s: &str| -> Result<(), ScheduleError> {
        if number(s)? == 0 {
            Err(bad("a step must be at least 1"))
        } else {
            Ok(())
        }
    };
    if let Some(rest) = field.strip_prefix('*') {
        return match rest.strip_prefix('/') {
            None if rest.is_empty() => Ok(()),
            Some(step) => positive_step(step),
            None => Err(bad("`*` may only be followed by `/N`")),
        };
    }
    if let Some((from, to)) = field.split_once('-') {
        let (from, to) = (in_range(number(from)?)?, in_range(number(to)?)?);
        return if from > to {
            Err(bad("a range must go from low to high"))
        } else {
            Ok(())
        };
    }
    if let Some((start, step)) = field.split_once('/') {
        in_range(number(start)?)?;
        return positive_step(step);
    }
    for part in field.split(',') {
        in_range(number(part)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_volsync_dialect() {
        for ok in [
            "*/10 * * * *",
            "0 * * * *",
            "0 3 * * 0",
            "5,10,15 1-5 1 1,6 1-5",
            "30 2/4 * * *",
            "59 23 31 12 6",
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            assert_eq!(
                ok.parse::<Schedule>().map(|s| s.to_string()),
                Ok(ok.to_string()),
                "{ok}"
            );
        }
    }

    #[test]
    fn refuses_what_volsync_refuses() {
        let cases = [
            ("0 */5 * * * *", "expected 5 fields"),
            ("garbage 1 2 3 4 5", "expected 5 fields"),
            ("* * * *", "expected 5 fields"),
            ("*  * * * *", "expected 5 fields"),
            ("", "expected 5 fields"),
            ("0 0 L * *", "day-of-month field \"L\""),
            ("0 0 * * MON", "day-of-week field \"MON\""),
            ("0 0 * JAN *", "month field \"JAN\""),
            ("0 0 * * 1#2", "day-of-week field"),
            ("60 * * * *", "60 is outside 0-59"),
            ("0 24 * * *", "24 is outside 0-23"),
            ("0 0 0 * *", "0 is outside 1-31"),
            ("0 0 * 13 *", "13 is outside 1-12"),
            ("0 0 * * 7", "7 is outside 0-6"),
            ("*/0 * * * *", "step must be at least 1"),
            ("5-1 * * * *", "from low to high"),
            ("@every 5m", "unknown descriptor"),
            ("@reboot", "unknown descriptor"),
            ("*5 * * * *", "`*` may only be followed"),
        ];
        for (bad, why) in cases {
            let err = bad.parse::<Schedule>().expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err:?} should contain {why:?}");
        }
    }

    #[test]
    fn start_step_means_from_start_every_step() {
        let s: Schedule = "30 2/4 * * *".parse().expect("valid");
        let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T03:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let next = s.cron().find_next_occurrence(&from, false).expect("next");
        assert_eq!(next.to_rfc3339(), "2026-01-01T06:30:00+00:00");
    }

    #[test]
    fn computes_next_run() {
        let s: Schedule = "*/10 * * * *".parse().expect("valid");
        let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:03:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let next = s.cron().find_next_occurrence(&from, false).expect("next");
        assert_eq!(next.to_rfc3339(), "2026-01-01T10:10:00+00:00");
    }
}
