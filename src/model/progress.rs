//! Where an action stands, as the PVC's annotations record it. Pure: read by the action
//! engine (to resume), by the planner (a primary leaves a pair alone while the peer fails
//! over) and by the webhook's and the controller's refusals.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::action::{ActionRequest, Verb};
use super::keys;

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
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub phase: Option<Phase>,
    /// The request being run (it may differ from `action` if that changed meanwhile).
    pub running: Option<String>,
    pub step: Option<String>,
    /// When the current step started.
    pub step_started: Option<Timestamp>,
    /// When the action started.
    pub action_started: Option<Timestamp>,
    /// When the action scaled the application down.
    pub app_down_since: Option<Timestamp>,
    /// How long the application was down, once it is back.
    pub app_down_seconds: Option<f64>,
}

fn timestamp(annotations: &BTreeMap<String, String>, key: &str) -> Option<Timestamp> {
    annotations.get(key).and_then(|t| t.parse::<Timestamp>().ok())
}

impl Progress {
    pub fn read(annotations: &BTreeMap<String, String>) -> Progress {
        Progress {
            phase: annotations.get(keys::ACTION_PHASE).and_then(|p| Phase::parse(p)),
            running: annotations.get(keys::ACTION_RUNNING).cloned(),
            step: annotations.get(keys::ACTION_STEP).cloned(),
            step_started: timestamp(annotations, keys::ACTION_STEP_STARTED),
            action_started: timestamp(annotations, keys::ACTION_STARTED),
            app_down_since: timestamp(annotations, keys::APP_DOWN_SINCE),
            app_down_seconds: annotations
                .get(keys::APP_DOWN_SECONDS)
                .and_then(|s| s.parse().ok())
                .filter(|s: &f64| s.is_finite() && *s >= 0.0),
        }
    }

    /// The request an engine is in the middle of, if any.
    pub fn in_flight(&self) -> Option<&str> {
        match (self.phase, &self.running) {
            (Some(Phase::Running), Some(request)) => Some(request),
            _ => None,
        }
    }

    /// The verb of the request in flight, if any.
    pub fn verb_in_flight(&self) -> Option<Verb> {
        self.in_flight()?.parse::<ActionRequest>().ok().map(|r| r.verb)
    }
}

/// Seconds from `from` to `to` (0 when `to` is earlier: clocks of two writers may differ).
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    let nanos = to.as_nanosecond().saturating_sub(from.as_nanosecond());
    (nanos.max(0) as f64) / 1e9
}
