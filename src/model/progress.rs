//! Where an action stands, as the PVC's annotations record it. Pure: read by the action
//! engine (to resume), by the planner (a primary leaves a pair alone while the peer fails
//! over) and by the webhook's and the controller's refusals.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

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
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// The other PVCs of the group the action acts on (empty: a group of one).
    pub members: Vec<String>,
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
            members: annotations
                .get(keys::ACTION_MEMBERS)
                .map(|m| m.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
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

/// A change to where an action stands. [`ProgressUpdate::patch`] is the one place the
/// `action-*` annotations are written from, and [`Progress::apply`] the same change in memory,
/// so a pass goes on from what it wrote without reading it back.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressUpdate {
    /// The request starts at its first step; what an earlier request left is cleared.
    Start {
        request: String,
        step: String,
        now: Timestamp,
        /// The group's other members.
        members: Vec<String>,
    },
    /// The next step starts.
    Advance(NextStep),
    /// What the running step waits for.
    Message(String),
    /// The request ends: `last` is recorded as finished and the bookkeeping cleared.
    Finish {
        last: String,
        phase: Phase,
        message: String,
    },
}

/// The step an action goes on to, and the application's down time when this move changed it.
#[derive(Clone, Debug, PartialEq)]
pub struct NextStep {
    pub step: String,
    pub now: Timestamp,
    pub app_down_since: Option<Timestamp>,
    pub app_down_seconds: Option<f64>,
}

impl ProgressUpdate {
    /// The merge patch of the PVC that records this change (`null` removes an annotation).
    pub fn patch(&self) -> Value {
        let text = |s: &str| Value::String(s.to_string());
        let mut fields: Map<String, Value> = Map::new();
        let clear_bookkeeping = |fields: &mut Map<String, Value>| {
            for key in keys::ACTION_BOOKKEEPING {
                fields.insert(key.to_string(), Value::Null);
            }
        };
        match self {
            ProgressUpdate::Start {
                request,
                step,
                now,
                members,
            } => {
                clear_bookkeeping(&mut fields);
                if !members.is_empty() {
                    fields.insert(keys::ACTION_MEMBERS.into(), text(&members.join(",")));
                }
                fields.insert(keys::ACTION_PHASE.into(), text(Phase::Running.as_str()));
                fields.insert(keys::ACTION_RUNNING.into(), text(request));
                fields.insert(keys::ACTION_STEP.into(), text(step));
                fields.insert(keys::ACTION_STEP_STARTED.into(), Value::String(now.to_string()));
                fields.insert(keys::ACTION_STARTED.into(), Value::String(now.to_string()));
                fields.insert(keys::ACTION_MESSAGE.into(), text(""));
            }
            ProgressUpdate::Advance(next) => {
                fields.insert(keys::ACTION_STEP.into(), text(&next.step));
                fields.insert(keys::ACTION_STEP_STARTED.into(), Value::String(next.now.to_string()));
                fields.insert(keys::ACTION_MESSAGE.into(), text(""));
                if let Some(since) = next.app_down_since {
                    fields.insert(keys::APP_DOWN_SINCE.into(), Value::String(since.to_string()));
                }
                if let Some(seconds) = next.app_down_seconds {
                    fields.insert(keys::APP_DOWN_SECONDS.into(), Value::String(format!("{seconds:.3}")));
                }
            }
            ProgressUpdate::Message(message) => {
                fields.insert(keys::ACTION_MESSAGE.into(), text(message));
            }
            ProgressUpdate::Finish { last, phase, message } => {
                clear_bookkeeping(&mut fields);
                fields.insert(keys::LAST_ACTION.into(), text(last));
                fields.insert(keys::ACTION_PHASE.into(), text(phase.as_str()));
                fields.insert(keys::ACTION_MESSAGE.into(), text(message));
            }
        }
        json!({"metadata": {"annotations": fields}})
    }
}

impl ProgressUpdate {
    /// The merge patch that shows this change on another member of the group, whose action
    /// `request` runs from the PVC `leader`. Start marks the member as held by the action,
    /// Finish releases it. A member never gets `action-running`, and gets `last-action` only
    /// when it carried the same request itself (`asked_too`), so that request is finished there
    /// too; otherwise its own `action` annotation keeps its own history.
    pub fn member_patch(&self, request: &str, leader: &str, asked_too: bool) -> Value {
        let text = |s: &str| Value::String(s.to_string());
        let mut fields: Map<String, Value> = Map::new();
        match self {
            ProgressUpdate::Start { step, .. } => {
                fields.insert(keys::GROUP_ACTION.into(), text(request));
                fields.insert(keys::GROUP_LEADER.into(), text(leader));
                fields.insert(keys::ACTION_PHASE.into(), text(Phase::Running.as_str()));
                fields.insert(keys::ACTION_STEP.into(), text(step));
                fields.insert(
                    keys::ACTION_MESSAGE.into(),
                    text(&format!("{request} runs for this volume's group from PVC {leader}")),
                );
            }
            ProgressUpdate::Advance(next) => {
                fields.insert(keys::ACTION_STEP.into(), text(&next.step));
            }
            ProgressUpdate::Message(message) => {
                fields.insert(keys::ACTION_MESSAGE.into(), text(message));
            }
            ProgressUpdate::Finish { phase, message, .. } => {
                if asked_too {
                    fields.insert(keys::LAST_ACTION.into(), text(request));
                }
                fields.insert(keys::GROUP_ACTION.into(), Value::Null);
                fields.insert(keys::GROUP_LEADER.into(), Value::Null);
                fields.insert(keys::ACTION_STEP.into(), Value::Null);
                fields.insert(keys::ACTION_PHASE.into(), text(phase.as_str()));
                fields.insert(
                    keys::ACTION_MESSAGE.into(),
                    text(&format!("{request} (run from PVC {leader}): {message}")),
                );
            }
        }
        json!({"metadata": {"annotations": fields}})
    }
}

impl Progress {
    /// The same change as `update.patch()`, applied to this copy (the message is not part of
    /// `Progress`).
    pub fn apply(&mut self, update: &ProgressUpdate) {
        match update {
            ProgressUpdate::Start {
                request,
                step,
                now,
                members,
            } => {
                *self = Progress {
                    phase: Some(Phase::Running),
                    running: Some(request.clone()),
                    step: Some(step.clone()),
                    step_started: Some(*now),
                    action_started: Some(*now),
                    members: members.clone(),
                    ..Progress::default()
                }
            }
            ProgressUpdate::Advance(next) => {
                self.step = Some(next.step.clone());
                self.step_started = Some(next.now);
                self.app_down_since = next.app_down_since.or(self.app_down_since);
                // Written with millisecond precision; kept the same here.
                if let Some(seconds) = next.app_down_seconds {
                    self.app_down_seconds = format!("{seconds:.3}").parse().ok();
                }
            }
            ProgressUpdate::Message(_) => {}
            ProgressUpdate::Finish { phase, .. } => {
                *self = Progress {
                    phase: Some(*phase),
                    ..Progress::default()
                }
            }
        }
    }
}

/// Seconds from `from` to `to` (0 when `to` is earlier: clocks of two writers may differ).
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    let nanos = to.as_nanosecond().saturating_sub(from.as_nanosecond());
    (nanos.max(0) as f64) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apply a merge patch's annotations to a map, as the API server does.
    fn merged(mut annotations: BTreeMap<String, String>, patch: &Value) -> BTreeMap<String, String> {
        let changes = patch["metadata"]["annotations"].as_object().expect("annotations");
        for (key, value) in changes {
            match value.as_str() {
                Some(v) => annotations.insert(key.clone(), v.to_string()),
                None => annotations.remove(key),
            };
        }
        annotations
    }

    #[test]
    fn what_a_pass_writes_is_what_it_goes_on_from() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let updates = [
            ProgressUpdate::Start {
                request: "migrate:1".into(),
                step: "check-preconditions".into(),
                now: t("2026-12-02T10:00:00Z"),
                members: vec!["data-web-1".into(), "data-web-2".into()],
            },
            ProgressUpdate::Message("waiting for the sync".into()),
            ProgressUpdate::Advance(NextStep {
                step: "scale-down-here".into(),
                now: t("2026-12-02T10:00:01Z"),
                app_down_since: Some(t("2026-12-02T10:00:01Z")),
                app_down_seconds: None,
            }),
            ProgressUpdate::Advance(NextStep {
                step: "wait-for-protection".into(),
                now: t("2026-12-02T10:00:09Z"),
                app_down_since: None,
                app_down_seconds: Some(7.98765),
            }),
            ProgressUpdate::Finish {
                last: "migrate:1".into(),
                phase: Phase::Succeeded,
                message: "migrate finished".into(),
            },
        ];
        // Left over from an earlier request: Start clears it.
        let mut annotations: BTreeMap<String, String> =
            [(keys::APP_DOWN_SECONDS.to_string(), "3.000".to_string())].into();
        let mut progress = Progress::read(&annotations);
        for update in &updates {
            annotations = merged(annotations, &update.patch());
            progress.apply(update);
            assert_eq!(Progress::read(&annotations), progress, "after {update:?}");
        }
        assert_eq!(
            annotations.get(keys::LAST_ACTION).map(String::as_str),
            Some("migrate:1")
        );
        assert_eq!(
            annotations.get(keys::ACTION_MESSAGE).map(String::as_str),
            Some("migrate finished")
        );
        for key in keys::ACTION_BOOKKEEPING {
            assert!(!annotations.contains_key(*key), "{key} cleared when the action ends");
        }
        assert_eq!(progress.in_flight(), None);
    }

    #[test]
    fn a_member_shows_the_group_action_and_is_released_at_its_end() {
        let start = ProgressUpdate::Start {
            request: "migrate:1".into(),
            step: "check-preconditions".into(),
            now: "2026-12-02T10:00:00Z".parse().expect("time"),
            members: vec!["data-web-1".into()],
        };
        let finish = ProgressUpdate::Finish {
            last: "migrate:1".into(),
            phase: Phase::Succeeded,
            message: "migrate finished".into(),
        };
        // A member that ran migrate:0 itself earlier keeps that history.
        let own: BTreeMap<String, String> = [
            (keys::ACTION.to_string(), "migrate:0".to_string()),
            (keys::LAST_ACTION.to_string(), "migrate:0".to_string()),
        ]
        .into();
        let held = merged(own.clone(), &start.member_patch("migrate:1", "data-web-0", false));
        assert_eq!(held.get(keys::GROUP_LEADER).map(String::as_str), Some("data-web-0"));
        assert_eq!(held.get(keys::GROUP_ACTION).map(String::as_str), Some("migrate:1"));
        assert_eq!(Progress::read(&held).in_flight(), None, "a member runs nothing itself");
        let released = merged(held.clone(), &finish.member_patch("migrate:1", "data-web-0", false));
        assert!(!released.contains_key(keys::GROUP_ACTION) && !released.contains_key(keys::GROUP_LEADER));
        assert_eq!(released.get(keys::LAST_ACTION), own.get(keys::LAST_ACTION));
        // A member that carried the same request has it finished too.
        let asked = merged(held, &finish.member_patch("migrate:1", "data-web-0", true));
        assert_eq!(asked.get(keys::LAST_ACTION).map(String::as_str), Some("migrate:1"));
        assert_eq!(
            released.get(keys::ACTION_MESSAGE).map(String::as_str),
            Some("migrate:1 (run from PVC data-web-0): migrate finished")
        );
    }
}
