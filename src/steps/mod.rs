//! Actions as resumable step machines, pure.
//!
//! Each verb is a fixed sequence of [`Step`]s (`sync_now`, `migrate`, `failover`, `failback`).
//! Where an action stands is read from the PVC's annotations ([`Progress`]); what the clusters
//! show for the current step is passed in ([`Observed`]); [`next`] says what to do. A step is
//! finished when the clusters show its result, not when its effect was sent, so re-running a
//! finished step is a no-op and a restart at any point resumes where it was. "Here" is the
//! cluster the action runs on (where it was requested); "peer" is the other one.

pub mod failback;
pub mod failover;
pub mod group;
pub mod migrate;
pub mod rotate_key;
pub mod sync_now;

use std::time::Duration;

use jiff::Timestamp;

use crate::model::action::Verb;
pub use crate::model::progress::{Phase, Progress, seconds_between};

/// Every step of every flow. What each does and when it is finished is in [`next`] and in
/// the controller's `execute` module; the order per verb is in [`flow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Preconditions that need the clusters (peer reachable, roles, workloads on the target).
    /// Changes nothing; a failed precondition fails the action before anything changed.
    CheckPreconditions,
    /// Scale the Deployments/StatefulSets mounting the PVC to 0 here (count recorded on each);
    /// finished when no pod here mounts it.
    ScaleDownHere,
    ScaleDownPeer,
    /// Delete the scheduled ReplicationSource `rs-P` here.
    DeleteScheduledSync,
    /// Delete the stale `rs-P` (and `rs-P-latest`) the peer kept from before a failover.
    DeleteStaleSyncOnPeer,
    /// Secret and `rd-P` on the peer; finished when the RD exists.
    CreateDestinationOnPeer,
    /// Failback: the peer's `rd-P` has published its address. A separate step, after the local
    /// scale-down, so VolSync's work on the RD overlaps the pods going away.
    WaitForDestinationOnPeer,
    /// `rs-P-latest` here, toward the peer's `rd-P`, `trigger.manual` = the request.
    CreateOneTimeSync,
    /// Finished when `rs-P-latest` reports `lastManualSync` = the request.
    WaitForSync,
    DeleteOneTimeSync,
    DeleteDestinationOnPeer,
    /// Label `rd-P`'s latest snapshot `volsync.backube/do-not-delete`: the restore point must
    /// outlive the RD.
    KeepSnapshot,
    /// `restored-P` from `rd-P` (VolSync's populator fills it from the latest snapshot).
    RestoreSnapshot,
    /// Failback: a VolumeSnapshot of the peer's copy (`P-before-REQUEST`) is taken: what the
    /// returning side wrote is never lost without a trace.
    KeepDivergedCopy,
    /// Failback: that snapshot is ready before the sync that overwrites the copy starts. A
    /// separate step, later, so the snapshotter's work overlaps the steps in between (nothing
    /// writes to the copy before the sync).
    WaitForKeptCopy,
    /// `rs-P-local`: restored-P into `rd-P` here (copyMethod Direct, manual trigger).
    CreateLocalSync,
    WaitForLocalSync,
    DeleteLocalSync,
    /// Delete `rd-P` here.
    DeleteDestination,
    /// Delete `restored-P` and the kept snapshot.
    DeleteRestored,
    /// Migrate: the peer's PVC becomes primary, this one secondary.
    SwapRoles,
    /// Failover: this PVC becomes primary.
    TakeOver,
    /// Failback: this PVC becomes secondary again, the peer's primary.
    RestoreRoles,
    /// Scale the workloads on the peer up to the recorded counts; finished when ready.
    ScaleUpPeer,
    ScaleUpHere,
    /// The peer, now primary, shows `state: Protected` with its own `rs-P`: scheduled
    /// protection runs in the new direction.
    WaitForProtection,
    /// Rotate-key: no sync of `rs-P` is running (one that is finishes with the old key).
    WaitForSyncIdle,
    /// Rotate-key: `rs-P` paused, so no sync starts while the two sides' keys differ.
    PauseSync,
    /// Rotate-key: a new random key in the peer's Secret; finished when the two keys differ.
    RotateKeyOnPeer,
    /// Rotate-key: the peer's new key in this cluster's Secret; finished when they are equal.
    RotateKeyHere,
    /// Rotate-key: `rs-P` runs again, with the new key.
    ResumeSync,
}

impl Step {
    /// Every step, grouped by what it does (the order of a flow is in its own file).
    pub const ALL: [Step; 31] = [
        Step::CheckPreconditions,
        Step::ScaleDownHere,
        Step::ScaleDownPeer,
        Step::ScaleUpPeer,
        Step::ScaleUpHere,
        Step::CreateDestinationOnPeer,
        Step::WaitForDestinationOnPeer,
        Step::CreateOneTimeSync,
        Step::CreateLocalSync,
        Step::WaitForSync,
        Step::WaitForLocalSync,
        Step::WaitForProtection,
        Step::DeleteScheduledSync,
        Step::DeleteStaleSyncOnPeer,
        Step::DeleteOneTimeSync,
        Step::DeleteDestinationOnPeer,
        Step::DeleteLocalSync,
        Step::DeleteDestination,
        Step::DeleteRestored,
        Step::KeepSnapshot,
        Step::RestoreSnapshot,
        Step::KeepDivergedCopy,
        Step::WaitForKeptCopy,
        Step::SwapRoles,
        Step::TakeOver,
        Step::RestoreRoles,
        Step::WaitForSyncIdle,
        Step::PauseSync,
        Step::RotateKeyOnPeer,
        Step::RotateKeyHere,
        Step::ResumeSync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckPreconditions => "check-preconditions",
            Step::ScaleDownHere => "scale-down-here",
            Step::ScaleDownPeer => "scale-down-peer",
            Step::DeleteScheduledSync => "delete-scheduled-sync",
            Step::DeleteStaleSyncOnPeer => "delete-stale-sync-on-peer",
            Step::CreateDestinationOnPeer => "create-destination-on-peer",
            Step::WaitForDestinationOnPeer => "wait-for-destination-on-peer",
            Step::CreateOneTimeSync => "create-one-time-sync",
            Step::WaitForSync => "wait-for-sync",
            Step::DeleteOneTimeSync => "delete-one-time-sync",
            Step::DeleteDestinationOnPeer => "delete-destination-on-peer",
            Step::KeepSnapshot => "keep-snapshot",
            Step::RestoreSnapshot => "restore-snapshot",
            Step::KeepDivergedCopy => "keep-diverged-copy",
            Step::WaitForKeptCopy => "wait-for-kept-copy",
            Step::CreateLocalSync => "create-local-sync",
            Step::WaitForLocalSync => "wait-for-local-sync",
            Step::DeleteLocalSync => "delete-local-sync",
            Step::DeleteDestination => "delete-destination",
            Step::DeleteRestored => "delete-restored",
            Step::SwapRoles => "swap-roles",
            Step::TakeOver => "take-over",
            Step::RestoreRoles => "restore-roles",
            Step::ScaleUpPeer => "scale-up-peer",
            Step::ScaleUpHere => "scale-up-here",
            Step::WaitForProtection => "wait-for-protection",
            Step::WaitForSyncIdle => "wait-for-sync-idle",
            Step::PauseSync => "pause-sync",
            Step::RotateKeyOnPeer => "rotate-key-on-peer",
            Step::RotateKeyHere => "rotate-key-here",
            Step::ResumeSync => "resume-sync",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// How long the step may take: waiting for data gets the sync timeout, the rest the step
    /// timeout.
    pub fn timeout(self, sync_timeout: Duration, step_timeout: Duration) -> Duration {
        match self {
            Step::WaitForSync | Step::WaitForLocalSync | Step::WaitForSyncIdle => sync_timeout,
            _ => step_timeout,
        }
    }

    /// Whether the step scales the application down (the outage a user sees starts here).
    pub fn scales_down(self) -> bool {
        matches!(self, Step::ScaleDownHere | Step::ScaleDownPeer)
    }

    /// Whether the step brings the application back (the outage ends when it is finished).
    pub fn scales_up(self) -> bool {
        matches!(self, Step::ScaleUpHere | Step::ScaleUpPeer)
    }
}

/// The steps of a verb, in order.
pub fn flow(verb: Verb) -> &'static [Step] {
    match verb {
        Verb::SyncNow => sync_now::STEPS,
        Verb::Migrate => migrate::STEPS,
        Verb::Failover => failover::STEPS,
        Verb::Failback => failback::STEPS,
        Verb::RotateKey => rotate_key::STEPS,
    }
}

/// What the clusters are left with when `verb` fails at `step`, and how to go on from there.
/// `here` and `peer` are the cluster names.
pub fn after_failure(verb: Verb, step: Step, here: &str, peer: &str) -> String {
    match verb {
        Verb::SyncNow => sync_now::after_failure(step),
        Verb::Migrate => migrate::after_failure(step, here, peer),
        Verb::Failover => failover::after_failure(step),
        Verb::Failback => failback::after_failure(step, here, peer),
        Verb::RotateKey => rotate_key::after_failure(step),
    }
}

/// A one-time ReplicationSource as the cluster shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OneTimeSource {
    pub trigger: Option<String>,
    pub last_manual_sync: Option<String>,
    /// The mover's last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The restore point of a failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestorePoint {
    /// There is no `rd-P` here.
    NoDestination,
    /// `rd-P` has no `latestImage`: no sync ever completed.
    NoImage,
    /// The image; `kept` when it is labelled do-not-delete or is not a snapshot (copyMethod
    /// Direct: the image is the PVC itself, nothing to keep).
    Image { name: String, kept: bool },
    /// The PVC names a restore point (`volsync-dr.io/restore-point`) that is not kept: why,
    /// and the points that are.
    Missing(String),
}

/// What the clusters show for the current step; each step gets the variant it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// CheckPreconditions: what does not hold (empty: all do).
    Problems(Vec<String>),
    /// Scale-down: workloads still with replicas, pods still mounting the PVC.
    ScaleDown { running: Vec<String>, pods: Vec<String> },
    /// Scale-up: workloads not yet at their count, workloads not yet ready, how many
    /// workloads mount the PVC on the target (0: there is no application to start), and the
    /// volumes those still to scale would start on that have not arrived on the target (each
    /// with why, from `model::group::unsafe_claims`).
    ScaleUp {
        to_scale: Vec<String>,
        not_ready: Vec<String>,
        workloads: usize,
        not_arrived: Vec<String>,
    },
    /// Delete steps: what is still there.
    Present(Vec<String>),
    /// CreateDestinationOnPeer: whether `rd-P` exists and has published its address.
    Destination { exists: bool, address: bool },
    /// RestoreSnapshot: whether `restored-P` exists.
    Restored { exists: bool },
    /// KeepDivergedCopy: whether the snapshot of the peer's copy exists and is ready to use.
    Kept { exists: bool, ready: bool },
    /// Create/wait steps of a one-time or local sync.
    OneTime(Option<OneTimeSource>),
    /// KeepSnapshot.
    Snapshot(RestorePoint),
    /// Role steps: whether both PVCs already show the roles the step writes.
    Roles { done: bool },
    /// WaitForProtection: the new primary's protection as it shows it.
    Protection { protected: bool, state: Option<String> },
    /// WaitForSyncIdle: what VolSync says of the sync that runs, if one does.
    Syncing(Option<String>),
    /// PauseSync, RotateKeyOnPeer, RotateKeyHere, ResumeSync: whether the clusters show the
    /// step's effect.
    Shown(bool),
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Perform this step's effect (idempotent), then look again.
    Act,
    /// The effect is done; the clusters have not shown its result yet.
    Wait(String),
    /// The step is finished (or must be redone from an earlier one): record this step next.
    Advance(Step),
    /// The whole action is finished.
    Done,
    /// The action fails; the message says why.
    Fail(String),
}

/// The step after `step` in `steps`, or `Done` after the last.
pub(crate) fn following(steps: &[Step], step: Step) -> Transition {
    match steps.iter().position(|s| *s == step).and_then(|i| steps.get(i + 1)) {
        Some(next) => Transition::Advance(*next),
        None => Transition::Done,
    }
}

/// What to do at `step` of the flow `steps`, given what the clusters show and the request's
/// text (the manual trigger of its syncs).
pub fn next(steps: &[Step], step: Step, observed: &Observed, trigger: &str) -> Transition {
    let finished = || following(steps, step);
    match (step, observed) {
        (Step::CheckPreconditions, Observed::Problems(problems)) => {
            if problems.is_empty() {
                finished()
            } else {
                Transition::Fail(problems.join("; "))
            }
        }
        (Step::ScaleDownHere | Step::ScaleDownPeer, Observed::ScaleDown { running, pods }) => {
            if !running.is_empty() {
                Transition::Act
            } else if !pods.is_empty() {
                Transition::Wait(format!("waiting for pods to stop using the PVC: {}", pods.join(", ")))
            } else {
                finished()
            }
        }
        (
            Step::ScaleUpHere | Step::ScaleUpPeer,
            Observed::ScaleUp {
                to_scale,
                not_ready,
                not_arrived,
                ..
            },
        ) => {
            if !to_scale.is_empty() && !not_arrived.is_empty() {
                // Never start an application on a volume whose data is elsewhere: its writes
                // would be overwritten by the next sync, or land on an empty volume.
                Transition::Fail(format!(
                    "starting {} would mount volumes whose data is not on this cluster: {}; nothing was scaled. \
                     Every volume the application mounts must be protected and move with it",
                    to_scale.join(", "),
                    not_arrived.join(", ")
                ))
            } else if !to_scale.is_empty() {
                Transition::Act
            } else if !not_ready.is_empty() {
                Transition::Wait(format!("waiting for workloads to be ready: {}", not_ready.join(", ")))
            } else {
                finished()
            }
        }
        (
            Step::DeleteScheduledSync
            | Step::DeleteStaleSyncOnPeer
            | Step::DeleteOneTimeSync
            | Step::DeleteDestinationOnPeer
            | Step::DeleteLocalSync
            | Step::DeleteDestination
            | Step::DeleteRestored,
            Observed::Present(left),
        ) => act_until(left.is_empty(), finished),
        (Step::CreateDestinationOnPeer, Observed::Destination { exists, .. }) => act_until(*exists, finished),
        (Step::WaitForDestinationOnPeer, Observed::Destination { exists, address }) => match (exists, address) {
            (false, _) => Transition::Act,
            (true, false) => Transition::Wait("waiting for the ReplicationDestination's address".into()),
            (true, true) => finished(),
        },
        (Step::RestoreSnapshot, Observed::Restored { exists }) => act_until(*exists, finished),
        (Step::KeepDivergedCopy, Observed::Kept { exists, .. }) => act_until(*exists, finished),
        // Gone meanwhile (deleted by hand): taken again, still before anything overwrote it.
        (Step::WaitForKeptCopy, Observed::Kept { exists, ready }) => match (exists, ready) {
            (false, _) => Transition::Act,
            (true, false) => Transition::Wait("waiting for the snapshot of the returning copy to be ready".into()),
            (true, true) => finished(),
        },
        (Step::CreateOneTimeSync | Step::CreateLocalSync, Observed::OneTime(rs)) => match rs {
            Some(rs) if rs.trigger.as_deref() == Some(trigger) => finished(),
            // Absent, or left over from another request: (re)write it with this trigger.
            _ => Transition::Act,
        },
        (Step::WaitForSync | Step::WaitForLocalSync, Observed::OneTime(rs)) => {
            let create = if step == Step::WaitForSync {
                Step::CreateOneTimeSync
            } else {
                Step::CreateLocalSync
            };
            match rs {
                Some(rs) if rs.last_manual_sync.as_deref() == Some(trigger) => finished(),
                Some(rs) if rs.trigger.as_deref() == Some(trigger) => Transition::Wait(match &rs.last_error {
                    Some(e) => format!("waiting for VolSync to finish the sync (the last attempt failed: {e})"),
                    None => "waiting for VolSync to finish the sync".into(),
                }),
                // Removed or changed by someone else: create it again.
                _ => Transition::Advance(create),
            }
        }
        (Step::KeepSnapshot, Observed::Snapshot(point)) => keep_snapshot(point, finished),
        (Step::WaitForSyncIdle, Observed::Syncing(running)) => match running {
            Some(what) => Transition::Wait(format!(
                "waiting for the running sync to finish with the old key ({what})"
            )),
            None => finished(),
        },
        (Step::PauseSync | Step::RotateKeyOnPeer | Step::RotateKeyHere | Step::ResumeSync, Observed::Shown(done)) => {
            act_until(*done, finished)
        }
        (Step::SwapRoles | Step::TakeOver | Step::RestoreRoles, Observed::Roles { done }) => act_until(*done, finished),
        (Step::WaitForProtection, Observed::Protection { protected, state }) => {
            if *protected {
                finished()
            } else {
                Transition::Wait(format!(
                    "waiting for the new primary to protect the PVC (its state: {})",
                    state.as_deref().unwrap_or("none yet")
                ))
            }
        }
        (step, observed) => Transition::Fail(format!(
            "internal error: step {} cannot read {observed:?}",
            step.as_str()
        )),
    }
}

/// A step whose effect is done once `done`: act until then.
fn act_until(done: bool, finished: impl FnOnce() -> Transition) -> Transition {
    if done { finished() } else { Transition::Act }
}

/// Failover's restore point: there must be one, and it is kept before the RD goes.
fn keep_snapshot(point: &RestorePoint, finished: impl FnOnce() -> Transition) -> Transition {
    match point {
        RestorePoint::NoDestination => Transition::Fail(
            "there is no ReplicationDestination here, so no replica to fail over to; is this PVC protected from the peer?"
                .into(),
        ),
        RestorePoint::NoImage => Transition::Fail(
            "no sync has completed into this cluster yet (the ReplicationDestination has no latestImage): there is no consistent copy to fail over to"
                .into(),
        ),
        RestorePoint::Missing(message) => Transition::Fail(format!("{message}; nothing was changed")),
        RestorePoint::Image { kept: false, .. } => Transition::Act,
        RestorePoint::Image { kept: true, .. } => finished(),
    }
}

/// Whether a step that started at `started` has run out of time at `now`.
pub fn timed_out(started: Option<Timestamp>, now: Timestamp, limit: Duration) -> bool {
    started.is_some_and(|s| seconds_between(s, now) > limit.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::keys;

    #[test]
    fn names_round_trip_and_every_flow_is_well_formed() {
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
        let mut used = std::collections::HashSet::new();
        for verb in Verb::ALL {
            let steps = flow(verb);
            let distinct: std::collections::HashSet<_> = steps.iter().collect();
            assert_eq!(distinct.len(), steps.len(), "{verb}: a step twice");
            used.extend(steps.iter().copied());
            // Every scale-down is followed by a scale-up in the same flow.
            let down = steps.iter().filter(|s| s.scales_down()).count();
            let up = steps.iter().filter(|s| s.scales_up()).count();
            assert!(down == 0 || up >= 1, "{verb}: scales down, never up");
            for s in steps {
                let text = after_failure(verb, *s, "a", "b");
                assert!(!text.is_empty(), "{verb}/{}", s.as_str());
            }
        }
        assert_eq!(used.len(), Step::ALL.len(), "every step belongs to some flow");
    }

    fn rs(trigger: &str, last: Option<&str>) -> Observed {
        Observed::OneTime(Some(OneTimeSource {
            trigger: Some(trigger.into()),
            last_manual_sync: last.map(str::to_string),
            last_error: None,
        }))
    }

    #[test]
    fn migrate_scales_down_and_syncs_from_what_it_sees() {
        use Observed as O;
        use Transition as T;
        let t = "migrate:1";
        let m = migrate::STEPS;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: Vec<(Step, Observed, Transition)> = vec![
            (
                Step::CheckPreconditions,
                O::Problems(vec![]),
                T::Advance(Step::ScaleDownHere),
            ),
            (
                Step::CheckPreconditions,
                O::Problems(s(&["peer unreachable", "no Deployment/app"])),
                T::Fail("peer unreachable; no Deployment/app".into()),
            ),
            (
                Step::ScaleDownHere,
                O::ScaleDown {
                    running: s(&["Deployment/app"]),
                    pods: s(&["app-0"]),
                },
                T::Act,
            ),
            (
                Step::ScaleDownHere,
                O::ScaleDown {
                    running: vec![],
                    pods: s(&["app-0"]),
                },
                T::Wait("waiting for pods to stop using the PVC: app-0".into()),
            ),
            (
                Step::ScaleDownHere,
                O::ScaleDown {
                    running: vec![],
                    pods: vec![],
                },
                T::Advance(Step::DeleteScheduledSync),
            ),
            (Step::DeleteScheduledSync, O::Present(s(&["rs-p"])), T::Act),
            (
                Step::DeleteScheduledSync,
                O::Present(vec![]),
                T::Advance(Step::CreateOneTimeSync),
            ),
            (Step::CreateOneTimeSync, O::OneTime(None), T::Act),
            (Step::CreateOneTimeSync, rs("migrate:0", Some("migrate:0")), T::Act),
            (Step::CreateOneTimeSync, rs(t, None), T::Advance(Step::WaitForSync)),
            (
                Step::WaitForSync,
                rs(t, Some("migrate:0")),
                T::Wait("waiting for VolSync to finish the sync".into()),
            ),
            (
                Step::WaitForSync,
                O::OneTime(Some(OneTimeSource {
                    trigger: Some(t.into()),
                    last_manual_sync: None,
                    last_error: Some("mover: reset".into()),
                })),
                T::Wait("waiting for VolSync to finish the sync (the last attempt failed: mover: reset)".into()),
            ),
            (Step::WaitForSync, rs(t, Some(t)), T::Advance(Step::DeleteOneTimeSync)),
            (Step::WaitForSync, O::OneTime(None), T::Advance(Step::CreateOneTimeSync)),
        ];
        for (step, observed, want) in cases {
            assert_eq!(next(m, step, &observed, t), want, "{step:?} {observed:?}");
        }
    }

    #[test]
    fn migrate_swaps_roles_scales_up_and_waits_for_protection() {
        use Observed as O;
        use Transition as T;
        let t = "migrate:1";
        let m = migrate::STEPS;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: Vec<(Step, Observed, Transition)> = vec![
            (Step::SwapRoles, O::Roles { done: false }, T::Act),
            (Step::SwapRoles, O::Roles { done: true }, T::Advance(Step::ScaleUpPeer)),
            (
                Step::ScaleUpPeer,
                O::ScaleUp {
                    to_scale: s(&["Deployment/app"]),
                    not_ready: vec![],
                    workloads: 1,
                    not_arrived: vec![],
                },
                T::Act,
            ),
            (
                Step::ScaleUpPeer,
                O::ScaleUp {
                    to_scale: s(&["StatefulSet/web to 3 on b"]),
                    not_ready: vec![],
                    workloads: 1,
                    not_arrived: s(&["data-web-1 (a replication destination)"]),
                },
                T::Fail(
                    "starting StatefulSet/web to 3 on b would mount volumes whose data is not on this cluster: \
                     data-web-1 (a replication destination); nothing was scaled. Every volume the application \
                     mounts must be protected and move with it"
                        .into(),
                ),
            ),
            (
                Step::ScaleUpPeer,
                O::ScaleUp {
                    to_scale: vec![],
                    not_ready: s(&["Deployment/app"]),
                    workloads: 1,
                    not_arrived: vec![],
                },
                T::Wait("waiting for workloads to be ready: Deployment/app".into()),
            ),
            (
                Step::ScaleUpPeer,
                O::ScaleUp {
                    to_scale: vec![],
                    not_ready: vec![],
                    workloads: 1,
                    not_arrived: vec![],
                },
                T::Advance(Step::WaitForProtection),
            ),
            (
                Step::WaitForProtection,
                O::Protection {
                    protected: false,
                    state: Some("Pending".into()),
                },
                T::Wait("waiting for the new primary to protect the PVC (its state: Pending)".into()),
            ),
            (
                Step::WaitForProtection,
                O::Protection {
                    protected: true,
                    state: Some("Protected".into()),
                },
                T::Done,
            ),
            // A step given the wrong observation is a bug, reported, never a silent advance.
            (
                Step::WaitForProtection,
                O::Present(vec![]),
                T::Fail("internal error: step wait-for-protection cannot read Present([])".into()),
            ),
        ];
        for (step, observed, want) in cases {
            assert_eq!(next(m, step, &observed, t), want, "{step:?} {observed:?}");
        }
    }

    #[test]
    fn failover_steps() {
        use Observed as O;
        use Transition as T;
        let t = "failover:1";
        let f = failover::STEPS;
        let cases: Vec<(Step, Observed, Transition)> = vec![
            (
                Step::KeepSnapshot,
                O::Snapshot(RestorePoint::NoDestination),
                T::Fail(String::new()),
            ),
            (
                Step::KeepSnapshot,
                O::Snapshot(RestorePoint::NoImage),
                T::Fail(String::new()),
            ),
            (
                Step::KeepSnapshot,
                O::Snapshot(RestorePoint::Image {
                    name: "s".into(),
                    kept: false,
                }),
                T::Act,
            ),
            (
                Step::KeepSnapshot,
                O::Snapshot(RestorePoint::Image {
                    name: "s".into(),
                    kept: true,
                }),
                T::Advance(Step::RestoreSnapshot),
            ),
            (Step::RestoreSnapshot, O::Restored { exists: false }, T::Act),
            (
                Step::RestoreSnapshot,
                O::Restored { exists: true },
                T::Advance(Step::CreateLocalSync),
            ),
            (Step::CreateLocalSync, rs(t, None), T::Advance(Step::WaitForLocalSync)),
            (
                Step::WaitForLocalSync,
                rs(t, Some(t)),
                T::Advance(Step::DeleteLocalSync),
            ),
            (
                Step::WaitForLocalSync,
                O::OneTime(None),
                T::Advance(Step::CreateLocalSync),
            ),
            (Step::DeleteRestored, O::Present(vec!["restored-p".into()]), T::Act),
            (Step::DeleteRestored, O::Present(vec![]), T::Advance(Step::TakeOver)),
            (
                Step::ScaleUpHere,
                O::ScaleUp {
                    to_scale: vec![],
                    not_ready: vec![],
                    workloads: 1,
                    not_arrived: vec![],
                },
                T::Done,
            ),
        ];
        for (step, observed, want) in cases {
            let got = next(f, step, &observed, t);
            match want {
                // Failures: the kind is what matters; the texts are checked below.
                T::Fail(_) => assert!(matches!(got, T::Fail(_)), "{step:?} {observed:?}: {got:?}"),
                want => assert_eq!(got, want, "{step:?} {observed:?}"),
            }
        }
        let T::Fail(text) = next(f, Step::KeepSnapshot, &O::Snapshot(RestorePoint::NoImage), t) else {
            panic!("no image must fail")
        };
        assert!(text.contains("no sync has completed"), "{text}");
    }

    #[test]
    fn failback_steps() {
        use Observed as O;
        use Transition as T;
        let b = failback::STEPS;
        // The peer's RD: created before the local scale-down, its address awaited after it.
        let rd = |exists, address| O::Destination { exists, address };
        for (step, observed, want) in [
            (Step::CreateDestinationOnPeer, rd(false, false), T::Act),
            (
                Step::CreateDestinationOnPeer,
                rd(true, false),
                T::Advance(Step::ScaleDownHere),
            ),
            (Step::WaitForDestinationOnPeer, rd(false, false), T::Act),
            (
                Step::WaitForDestinationOnPeer,
                rd(true, false),
                T::Wait("waiting for the ReplicationDestination's address".into()),
            ),
            (
                Step::WaitForDestinationOnPeer,
                rd(true, true),
                T::Advance(Step::WaitForKeptCopy),
            ),
        ] {
            assert_eq!(next(b, step, &observed, "failback:1"), want, "{step:?} {observed:?}");
        }
        // The returning copy's snapshot: taken early, awaited just before the sync that
        // overwrites the copy, taken again if it vanished meanwhile.
        let kept = |exists, ready| O::Kept { exists, ready };
        for (step, observed, want) in [
            (Step::KeepDivergedCopy, kept(false, false), T::Act),
            (
                Step::KeepDivergedCopy,
                kept(true, false),
                T::Advance(Step::DeleteStaleSyncOnPeer),
            ),
            (
                Step::WaitForKeptCopy,
                kept(true, false),
                T::Wait("waiting for the snapshot of the returning copy to be ready".into()),
            ),
            (
                Step::WaitForKeptCopy,
                kept(true, true),
                T::Advance(Step::CreateOneTimeSync),
            ),
            (Step::WaitForKeptCopy, kept(false, false), T::Act),
        ] {
            assert_eq!(next(b, step, &observed, "failback:1"), want, "{step:?} {observed:?}");
        }
    }

    #[test]
    fn progress_and_timeouts() {
        let a: BTreeMap<String, String> = [
            (keys::ACTION_PHASE, "Running"),
            (keys::ACTION_RUNNING, "migrate:1"),
            (keys::ACTION_STEP, "wait-for-sync"),
            (keys::ACTION_STEP_STARTED, "2026-11-24T10:00:00Z"),
            (keys::ACTION_STARTED, "2026-11-24T09:59:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = Progress::read(&a);
        assert_eq!(p.in_flight(), Some("migrate:1"));
        let (started, step) = (p.action_started.expect("started"), p.step_started.expect("step"));
        assert_eq!(seconds_between(started, step), 60.0);
        assert_eq!(seconds_between(step, started), 0.0, "never negative");
        assert_eq!((p.app_down_since, p.app_down_seconds), (None, None));
        let mut done = a.clone();
        done.insert(keys::ACTION_PHASE.into(), "Succeeded".into());
        assert_eq!(Progress::read(&done).in_flight(), None);

        let at = |s: i64| Timestamp::from_second(s).expect("time");
        assert!(timed_out(Some(at(100)), at(401), Duration::from_secs(300)));
        assert!(!timed_out(Some(at(100)), at(400), Duration::from_secs(300)));
        assert!(!timed_out(None, at(10_000), Duration::from_secs(1)));
        let (sync, step) = (Duration::from_secs(3600), Duration::from_secs(600));
        assert_eq!(Step::WaitForLocalSync.timeout(sync, step), sync);
        assert_eq!(Step::ScaleDownHere.timeout(sync, step), step);
    }
}
