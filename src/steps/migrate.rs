//! `migrate` (on the primary, both clusters up): move the application to the peer with no data
//! lost. Check → scale the application down here and wait until no pod mounts the PVC →
//! delete the scheduled `rs-P` → one-time sync → delete it → delete the peer's `rd-P` → swap
//! roles → scale the application up on the peer → wait until the peer protects the PVC back
//! to here.
//!
//! The roles are swapped before the application starts on the peer (the runbook starts it
//! first): once the data has moved, a failure must not let this side, still primary,
//! re-create protection that would sync its old copy over the one the application now writes.

use super::Step;

pub const STEPS: &[Step] = &[
    Step::CheckPreconditions,
    Step::ScaleDownHere,
    Step::DeleteScheduledSync,
    Step::CreateOneTimeSync,
    Step::WaitForSync,
    Step::DeleteOneTimeSync,
    Step::DeleteDestinationOnPeer,
    Step::SwapRoles,
    Step::ScaleUpPeer,
    Step::WaitForProtection,
];

pub fn after_failure(step: Step, here: &str, peer: &str) -> String {
    match step {
        Step::CheckPreconditions => "nothing was changed".into(),
        Step::SwapRoles | Step::ScaleUpPeer | Step::WaitForProtection => format!(
            "the data is on {peer} and its PVC is the primary now; scale the application up there once every volume it mounts is primary there \
             (the counts are in volsync-dr.io/replicas on the workloads here), protection from {peer} back to \
             {here} is set up by volsync-dr on {peer}"
        ),
        _ => format!(
            "{here} is still the primary and its scheduled protection resumes; the application stays scaled \
             down here (the counts are in volsync-dr.io/replicas on each workload): request migrate again \
             with a new ID to finish, or scale the application back up here to stay"
        ),
    }
}
