//! `rotate-key` (on the primary): a new pre-shared key for the pair, between two syncs. Wait
//! until no sync runs (one running finishes with the old key) → pause the scheduled
//! ReplicationSource (no sync starts half-keyed) → a new random key in the peer's Secret →
//! the same key in this cluster's → resume: the next sync uses the new key.
//!
//! The key here is the pair's truth until the last key step: a failure before it leaves the
//! old key here, and protection writes it back to the peer.

use super::Step;

pub const STEPS: &[Step] = &[
    Step::CheckPreconditions,
    Step::WaitForSyncIdle,
    Step::PauseSync,
    Step::RotateKeyOnPeer,
    Step::RotateKeyHere,
    Step::ResumeSync,
];

pub fn after_failure(step: Step) -> String {
    match step {
        Step::CheckPreconditions | Step::WaitForSyncIdle => "nothing was changed".into(),
        Step::PauseSync | Step::RotateKeyOnPeer => {
            "the scheduled sync was resumed with the old key (protection writes it back to the peer); request rotate-key again with a new ID".into()
        }
        _ => "the scheduled sync was resumed; request rotate-key again with a new ID".into(),
    }
}
