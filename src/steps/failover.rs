//! `failover` (on the secondary, the primary gone): start the application here on the last
//! complete copy. Needs nothing from the peer.
//!
//! A sync cut off halfway leaves the PVC partly overwritten, so the runbook restores the last
//! snapshot into it first: keep `rd-P`'s latest snapshot (do-not-delete) → `restored-P` from
//! `rd-P` → `rs-P-local` (restored-P into `rd-P` here, Direct, manual trigger) → wait → delete
//! it → delete `rd-P` → delete `restored-P` and the kept snapshot → this PVC becomes the
//! primary → scale the application up here.
//!
//! The role changes before the application starts, so that an old primary coming back finds
//! a primary here and leaves the pair alone instead of re-creating its protection over it.

use super::Step;

pub const STEPS: &[Step] = &[
    Step::KeepSnapshot,
    Step::RestoreSnapshot,
    Step::CreateLocalSync,
    Step::WaitForLocalSync,
    Step::DeleteLocalSync,
    Step::DeleteDestination,
    Step::DeleteRestored,
    Step::TakeOver,
    Step::ScaleUpHere,
];

pub fn after_failure(step: Step) -> String {
    match step {
        Step::KeepSnapshot => "nothing was changed".into(),
        Step::TakeOver | Step::ScaleUpHere => {
            "this PVC is the primary now, with the restored data; scale the application up here once every volume it mounts is primary here".into()
        }
        _ => "this PVC is still the secondary and the application was not started here; request failover \
              again with a new ID to resume (it reuses or removes what this attempt created)"
            .into(),
    }
}
