//! `sync-now`: one sync from the primary, now. Steps, each checked against the clusters before
//! it acts: create the one-time ReplicationSource (`rs-P-latest`, `trigger.manual` = the
//! request), wait until VolSync reports `lastManualSync` equal to it, delete it.

use std::time::Duration;

use super::Transition;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    CreateOneTimeSync,
    WaitForSync,
    DeleteOneTimeSync,
}

impl Step {
    pub const FIRST: Step = Step::CreateOneTimeSync;

    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateOneTimeSync => "create-one-time-sync",
            Step::WaitForSync => "wait-for-sync",
            Step::DeleteOneTimeSync => "delete-one-time-sync",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        [Step::CreateOneTimeSync, Step::WaitForSync, Step::DeleteOneTimeSync]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// How long the step may take; waiting for the data gets the configured sync timeout.
    pub fn timeout(self, sync_timeout: Duration) -> Duration {
        match self {
            Step::WaitForSync => sync_timeout,
            Step::CreateOneTimeSync | Step::DeleteOneTimeSync => Duration::from_secs(300),
        }
    }
}

/// The one-time ReplicationSource as the cluster shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OneTimeSource {
    pub trigger: Option<String>,
    pub last_manual_sync: Option<String>,
}

/// What to do at `step`, given the one-time source (if it exists) and the request's trigger.
pub fn next(step: Step, one_time: Option<&OneTimeSource>, trigger: &str) -> Transition<Step> {
    match step {
        Step::CreateOneTimeSync => match one_time {
            Some(rs) if rs.trigger.as_deref() == Some(trigger) => Transition::Advance(Step::WaitForSync),
            // Absent, or left over from another request: (re)write it with this trigger.
            _ => Transition::Act(Step::CreateOneTimeSync),
        },
        Step::WaitForSync => match one_time {
            Some(rs) if rs.last_manual_sync.as_deref() == Some(trigger) => Transition::Advance(Step::DeleteOneTimeSync),
            Some(rs) if rs.trigger.as_deref() == Some(trigger) => Transition::Wait(
                Step::WaitForSync,
                "waiting for VolSync to finish the one-time sync".into(),
            ),
            // Removed or changed by someone else: start the step over.
            _ => Transition::Advance(Step::CreateOneTimeSync),
        },
        Step::DeleteOneTimeSync => match one_time {
            None => Transition::Done,
            Some(_) => Transition::Act(Step::DeleteOneTimeSync),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(trigger: &str, last: Option<&str>) -> OneTimeSource {
        OneTimeSource {
            trigger: Some(trigger.into()),
            last_manual_sync: last.map(str::to_string),
        }
    }

    #[test]
    fn steps_in_order_and_idempotent() {
        let t = "sync-now:1";
        let cases: Vec<(Step, Option<OneTimeSource>, Transition<Step>)> = vec![
            (Step::CreateOneTimeSync, None, Transition::Act(Step::CreateOneTimeSync)),
            (
                Step::CreateOneTimeSync,
                Some(rs("sync-now:0", Some("sync-now:0"))),
                Transition::Act(Step::CreateOneTimeSync),
            ),
            (
                Step::CreateOneTimeSync,
                Some(rs(t, None)),
                Transition::Advance(Step::WaitForSync),
            ),
            (
                Step::WaitForSync,
                Some(rs(t, None)),
                Transition::Wait(
                    Step::WaitForSync,
                    "waiting for VolSync to finish the one-time sync".into(),
                ),
            ),
            (
                Step::WaitForSync,
                Some(rs(t, Some("sync-now:0"))),
                Transition::Wait(
                    Step::WaitForSync,
                    "waiting for VolSync to finish the one-time sync".into(),
                ),
            ),
            (
                Step::WaitForSync,
                Some(rs(t, Some(t))),
                Transition::Advance(Step::DeleteOneTimeSync),
            ),
            (Step::WaitForSync, None, Transition::Advance(Step::CreateOneTimeSync)),
            (
                Step::DeleteOneTimeSync,
                Some(rs(t, Some(t))),
                Transition::Act(Step::DeleteOneTimeSync),
            ),
            (Step::DeleteOneTimeSync, None, Transition::Done),
        ];
        for (step, observed, want) in cases {
            assert_eq!(next(step, observed.as_ref(), t), want, "{step:?} {observed:?}");
        }
        for s in [Step::CreateOneTimeSync, Step::WaitForSync, Step::DeleteOneTimeSync] {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
        assert!(super::super::timed_out(Some(100), 401, Duration::from_secs(300)));
        assert!(!super::super::timed_out(Some(100), 400, Duration::from_secs(300)));
        assert!(!super::super::timed_out(None, 10_000, Duration::from_secs(1)));
    }
}
