//! `sync-now` (on the primary): one sync now. The one-time ReplicationSource `rs-P-latest`
//! (the scheduled one's spec with `trigger.manual` = the request) → wait until VolSync reports
//! `lastManualSync` equal to it → delete it. Scheduled protection is never touched.

use super::Step;

pub const STEPS: &[Step] = &[
    Step::CheckPreconditions,
    Step::CreateOneTimeSync,
    Step::WaitForSync,
    Step::DeleteOneTimeSync,
];

pub fn after_failure(step: Step) -> String {
    match step {
        Step::CheckPreconditions => "nothing was changed".into(),
        _ => "the one-time ReplicationSource was removed and scheduled protection goes on; request sync-now again with a new ID".into(),
    }
}
