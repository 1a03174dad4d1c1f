//! Actions as resumable step machines, pure: where an action stands is read from the PVC's
//! annotations, what the clusters show is passed in, and `next` says what to do. The
//! controller performs the effect of a step, persists the step before and after, and so a
//! restart at any point resumes where it was without repeating a finished step.

pub mod sync_now;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::keys;

/// `volsync-dr.io/action-phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        [Phase::Running, Phase::Succeeded, Phase::Failed]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// Where an action stands, as its annotations record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Option<Phase>,
    pub step: Option<String>,
    /// Seconds since the Unix epoch when the current step started.
    pub step_started: Option<i64>,
}

impl Progress {
    pub fn read(annotations: &BTreeMap<String, String>) -> Progress {
        Progress {
            phase: annotations.get(keys::ACTION_PHASE).and_then(|p| Phase::parse(p)),
            step: annotations.get(keys::ACTION_STEP).cloned(),
            step_started: annotations
                .get(keys::ACTION_STEP_STARTED)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second()),
        }
    }
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition<S> {
    /// Perform this step's effect (idempotent), then look again.
    Act(S),
    /// The step's effect is done; wait for the clusters to show its result.
    Wait(S, String),
    /// The step is finished: record the next one.
    Advance(S),
    /// The whole action is finished.
    Done,
    /// The action failed; the message says why and what state the clusters are in.
    Fail(String),
}

/// Whether a step that started at `started` (epoch seconds) has run out of time at `now`.
pub fn timed_out(started: Option<i64>, now: i64, limit: Duration) -> bool {
    started.is_some_and(|s| now.saturating_sub(s) > i64::try_from(limit.as_secs()).unwrap_or(i64::MAX))
}
