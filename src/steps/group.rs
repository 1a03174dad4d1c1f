//! One step over an application group. Scaling and the preconditions are decided once for the
//! whole group (one scale-down of all its workloads, one scale-up); every other step is decided
//! per volume by [`next`], and the group moves on only when every volume has.

use super::{Observed, Step, Transition, following, next};

impl Step {
    /// Whether the step is decided once for the whole group rather than per volume.
    pub fn is_group_wide(self) -> bool {
        self == Step::CheckPreconditions || self.scales_down() || self.scales_up()
    }
}

/// What the group does at one step: the transition, and which volumes act when it is `Act`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMove {
    pub transition: Transition,
    /// Indexes into the volumes observed: those whose effect is not done yet.
    pub act_on: Vec<usize>,
}

/// Combine each volume's transition at `step`. A failure of any volume fails the group; volumes
/// whose effect is not done act; a volume that must go back to an earlier step (its one-time
/// sync was removed) takes the group back with it, since that step is idempotent for the rest;
/// any volume still waiting holds the group; when all are finished the group advances (or is
/// done). Messages name the volume when the group has more than one.
pub fn next_for_group(steps: &[Step], step: Step, observed: &[(&str, Observed)], trigger: &str) -> GroupMove {
    let named = |pvc: &str, text: &str| {
        if observed.len() > 1 {
            format!("PVC {pvc}: {text}")
        } else {
            text.to_string()
        }
    };
    let transitions: Vec<(&str, Transition)> = observed
        .iter()
        .map(|(pvc, seen)| (*pvc, next(steps, step, seen, trigger)))
        .collect();
    let only = |transition| GroupMove {
        transition,
        act_on: Vec::new(),
    };
    let failures: Vec<String> = transitions
        .iter()
        .filter_map(|(pvc, t)| match t {
            Transition::Fail(why) => Some(named(pvc, why)),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        return only(Transition::Fail(failures.join("; ")));
    }
    let act_on: Vec<usize> = transitions
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| *t == Transition::Act)
        .map(|(i, _)| i)
        .collect();
    if !act_on.is_empty() {
        return GroupMove {
            transition: Transition::Act,
            act_on,
        };
    }
    let forward = following(steps, step);
    let position = |s: &Step| steps.iter().position(|x| x == s);
    let back = transitions
        .iter()
        .filter_map(|(_, t)| match t {
            Transition::Advance(s) if Transition::Advance(*s) != forward => Some(*s),
            _ => None,
        })
        .min_by_key(position);
    if let Some(earlier) = back {
        return only(Transition::Advance(earlier));
    }
    if let Some((pvc, Transition::Wait(message))) = transitions.iter().find(|(_, t)| matches!(t, Transition::Wait(_))) {
        return only(Transition::Wait(named(pvc, message)));
    }
    only(forward)
}

#[cfg(test)]
mod tests {
    use super::super::{OneTimeSource, migrate};
    use super::*;

    fn one_time(trigger: Option<&str>, last: Option<&str>, error: Option<&str>) -> Observed {
        Observed::OneTime(trigger.map(|t| OneTimeSource {
            trigger: Some(t.into()),
            last_manual_sync: last.map(str::to_string),
            last_error: error.map(str::to_string),
        }))
    }

    #[test]
    fn the_group_moves_on_only_when_every_volume_has() {
        let t = "migrate:1";
        let synced = || one_time(Some(t), Some(t), None);
        let running = || one_time(Some(t), None, None);
        let failed_try = || one_time(Some(t), None, Some("connection refused"));
        let gone = || one_time(None, None, None);
        type Case = (&'static str, Step, Vec<(&'static str, Observed)>, GroupMove);
        let go = |transition| GroupMove {
            transition,
            act_on: vec![],
        };
        let cases: Vec<Case> = vec![
            (
                "all synced: advance",
                Step::WaitForSync,
                vec![("d0", synced()), ("d1", synced()), ("d2", synced())],
                go(Transition::Advance(Step::DeleteOneTimeSync)),
            ),
            (
                "one still syncing: wait, naming it",
                Step::WaitForSync,
                vec![("d0", synced()), ("d1", running()), ("d2", synced())],
                go(Transition::Wait(
                    "PVC d1: waiting for VolSync to finish the sync".into(),
                )),
            ),
            (
                "one's sync removed meanwhile: the group goes back to create it",
                Step::WaitForSync,
                vec![("d0", synced()), ("d1", running()), ("d2", gone())],
                go(Transition::Advance(Step::CreateOneTimeSync)),
            ),
            (
                "a failed attempt is a wait, said with the error",
                Step::WaitForSync,
                vec![("d0", failed_try()), ("d1", synced())],
                go(Transition::Wait(
                    "PVC d0: waiting for VolSync to finish the sync (the last attempt failed: connection refused)"
                        .into(),
                )),
            ),
            (
                "only the volumes not done act",
                Step::CreateOneTimeSync,
                vec![("d0", running()), ("d1", gone()), ("d2", gone())],
                GroupMove {
                    transition: Transition::Act,
                    act_on: vec![1, 2],
                },
            ),
            (
                "a failure of one fails the group, naming each",
                Step::DeleteDestinationOnPeer,
                vec![
                    ("d0", Observed::Present(vec![])),
                    ("d1", Observed::Roles { done: true }),
                ],
                go(Transition::Fail(
                    "PVC d1: internal error: step delete-destination-on-peer cannot read Roles { done: true }".into(),
                )),
            ),
            (
                "a group of one says no volume name",
                Step::WaitForSync,
                vec![("db", running())],
                go(Transition::Wait("waiting for VolSync to finish the sync".into())),
            ),
            (
                "the last step done by all: done",
                Step::WaitForProtection,
                vec![
                    (
                        "d0",
                        Observed::Protection {
                            protected: true,
                            state: Some("Protected".into()),
                        },
                    ),
                    (
                        "d1",
                        Observed::Protection {
                            protected: true,
                            state: Some("Protected".into()),
                        },
                    ),
                ],
                go(Transition::Done),
            ),
        ];
        for (what, step, observed, want) in cases {
            assert_eq!(next_for_group(migrate::STEPS, step, &observed, t), want, "{what}");
        }
    }

    #[test]
    fn scaling_and_preconditions_are_group_wide() {
        let wide: Vec<Step> = Step::ALL.into_iter().filter(|s| s.is_group_wide()).collect();
        assert_eq!(
            wide,
            [
                Step::CheckPreconditions,
                Step::ScaleDownHere,
                Step::ScaleDownPeer,
                Step::ScaleUpPeer,
                Step::ScaleUpHere
            ]
        );
    }
}
