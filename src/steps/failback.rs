//! `failback` (on the cluster that took over, once the original primary is back): return the
//! application there with the writes made here since the failover. The old primary's own
//! writes made while it was cut off (or after it came back, before it was fenced) are replaced,
//! as in the runbook, but first kept in a VolumeSnapshot there.
//!
//! Check → scale the application down on the peer (fenced, it is down already) → snapshot the
//! peer's copy → delete the peer's stale `rs-P` → Secret and `rd-P` on the peer (nothing writes
//! to the copy until a source connects) → scale it down here too, so nothing is written after
//! the final sync (the runbook scales down here only after the sync, and loses those writes) →
//! the RD's address and the snapshot ready (VolSync and the snapshotter work meanwhile) →
//! one-time sync from here → delete it → delete the peer's `rd-P` →
//! roles as before the failure → scale the application up on the peer → wait until the peer
//! protects the PVC back to here.

use super::Step;

pub const STEPS: &[Step] = &[
    Step::CheckPreconditions,
    Step::ScaleDownPeer,
    Step::KeepDivergedCopy,
    Step::DeleteStaleSyncOnPeer,
    Step::CreateDestinationOnPeer,
    Step::ScaleDownHere,
    Step::WaitForDestinationOnPeer,
    Step::WaitForKeptCopy,
    Step::CreateOneTimeSync,
    Step::WaitForSync,
    Step::DeleteOneTimeSync,
    Step::DeleteDestinationOnPeer,
    Step::RestoreRoles,
    Step::ScaleUpPeer,
    Step::WaitForProtection,
];

pub fn after_failure(step: Step, here: &str, peer: &str) -> String {
    match step {
        Step::CheckPreconditions => "nothing was changed".into(),
        Step::RestoreRoles | Step::ScaleUpPeer | Step::WaitForProtection => format!(
            "{peer} is the primary again with the data from {here}; scale the application up there once \
             every volume it mounts is primary there (the counts are in volsync-dr.io/replicas on the workloads)"
        ),
        _ => format!(
            "{here} is still the primary; the application may be scaled down on {peer} and here (the counts \
             are in volsync-dr.io/replicas on each workload): scale it up here to keep serving from {here}, \
             and request failback again with a new ID to retry"
        ),
    }
}
