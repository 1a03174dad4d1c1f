//! Key rotation on a timer (pure): whether a primary's key is due, and whether volsync-dr may
//! write the request. It writes `action` only where nobody else does: the annotation absent,
//! or holding a request it wrote itself (`rotate-key:auto-…`). A request a user or GitOps
//! tool owns is never replaced: a tool that set it back would make an old, finished request
//! differ from `last-action` and run again.

use std::time::Duration;

use crate::model::keys;
use crate::model::progress::Phase;

/// The prefix of the requests the timer writes.
pub const AUTO_ID_PREFIX: &str = "rotate-key:auto-";

/// `--rotate-keys-every`: a duration (`30d`, `720h`, `1d12h`) from 1 hour to 365 days.
pub fn interval(text: &str) -> Result<Duration, String> {
    use crate::model::protection::{DurationError, duration_within};
    duration_within(text, 3600.0, 365.0 * 86_400.0).map_err(|e| match e {
        DurationError::NotADuration(None) => {
            "not a duration; accepted: 1h to 365d, such as 30d, 720h or 1d12h".to_string()
        }
        DurationError::NotADuration(Some(why)) => format!("not a duration: {why}"),
        DurationError::OutOfRange => "out of range; accepted: 1h to 365d".to_string(),
    })
}

/// What the timer does for one primary PVC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Not yet (or no timer, or no key).
    No,
    /// Write this request into `action`.
    Request(String),
    /// Due, but `action` is someone else's: say so instead.
    Blocked(String),
}

/// `annotations` of a protected primary PVC; `key_made` when its key was made; `now`.
pub fn due(
    every: Option<Duration>,
    annotations: &std::collections::BTreeMap<String, String>,
    key_made: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Due {
    let (Some(every), Some(made)) = (every, key_made) else {
        return Due::No;
    };
    let age = now.duration_since(made).as_secs_f64();
    if age < every.as_secs_f64() {
        return Due::No;
    }
    let action = annotations.get(keys::ACTION);
    let running = annotations.get(keys::ACTION_PHASE).and_then(|p| Phase::parse(p)) == Some(Phase::Running);
    let pending = action.is_some() && action != annotations.get(keys::LAST_ACTION);
    if running || pending {
        return Due::No;
    }
    match action {
        Some(a) if !a.starts_with(AUTO_ID_PREFIX) => Due::Blocked(format!(
            "the key is {} days old, past --rotate-keys-every; not requested automatically because volsync-dr.io/action holds {a:?}, which volsync-dr does not overwrite: request rotate-key yourself",
            (age / 86_400.0) as u64
        )),
        _ => Due::Request(format!("{AUTO_ID_PREFIX}{}", now.as_second())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("time")
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(interval("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        for bad in ["soon", "30m", "400d", "30"] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }

    /// (what, interval, annotations, when the key was made, what is due)
    type Case = (
        &'static str,
        Option<Duration>,
        BTreeMap<String, String>,
        Option<jiff::Timestamp>,
        Due,
    );

    #[test]
    fn when_the_timer_requests_a_rotation() {
        let now = at("2026-12-03T00:00:00Z");
        let old = Some(at("2026-11-01T00:00:00Z"));
        let young = Some(at("2026-12-01T00:00:00Z"));
        let every = Some(Duration::from_secs(30 * 86_400));
        let a = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let request = Due::Request(format!("{AUTO_ID_PREFIX}{}", now.as_second()));
        let cases: Vec<Case> = vec![
            ("no timer", None, a(&[]), old, Due::No),
            ("young key", every, a(&[]), young, Due::No),
            ("no action yet", every, a(&[]), old, request.clone()),
            (
                "its own earlier request, finished",
                every,
                a(&[
                    (keys::ACTION, "rotate-key:auto-1"),
                    (keys::LAST_ACTION, "rotate-key:auto-1"),
                ]),
                old,
                request.clone(),
            ),
            (
                "a request pending",
                every,
                a(&[(keys::ACTION, "sync-now:2"), (keys::LAST_ACTION, "sync-now:1")]),
                old,
                Due::No,
            ),
            (
                "an action running",
                every,
                a(&[(keys::ACTION, "rotate-key:auto-1"), (keys::ACTION_PHASE, "Running")]),
                old,
                Due::No,
            ),
        ];
        for (what, every, annotations, made, want) in cases {
            assert_eq!(due(every, &annotations, made, now), want, "{what}");
        }
        let users = a(&[(keys::ACTION, "migrate:1"), (keys::LAST_ACTION, "migrate:1")]);
        match due(every, &users, old, now) {
            Due::Blocked(why) => assert!(why.contains("\"migrate:1\"") && why.contains("32 days old"), "{why}"),
            other => panic!("a user's request is never overwritten: {other:?}"),
        }
    }
}
