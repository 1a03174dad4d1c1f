//! Whether a group's action may take another member along, decided from that member's view.
//! Pure; the controller reads the members and holds them.

use crate::model::action::{Verb, refusal_for_role};
use crate::model::keys;
use crate::model::view::PvcView;

/// What the PVC that carries a request finds on one other member of its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberCheck {
    /// The action may hold it (or holds it already).
    Joins,
    /// A member whose name sorts first carries the same request: it leads, this PVC waits to be
    /// held by it (several members annotated at once start one action, not several).
    LedBy(String),
    /// The action cannot take it along; refused with this reason (names the member).
    Problem(String),
}

/// Check `member` for the request `request` (verb `verb`) carried by the PVC `leader`.
pub fn check_member(member: &PvcView, leader: &str, request: &str, verb: Verb) -> MemberCheck {
    let name = &member.name;
    let spec = match &member.spec {
        Ok(spec) => spec,
        Err(errors) => {
            return MemberCheck::Problem(format!(
                "PVC {name} moves with this one but its annotations are invalid ({errors}); fix them"
            ));
        }
    };
    if let Some(hold) = &member.held {
        return if hold.request == request && hold.leader == leader {
            MemberCheck::Joins
        } else {
            MemberCheck::Problem(format!(
                "PVC {name} moves with this one but is held by the group action {} run from PVC {}",
                hold.request, hold.leader
            ))
        };
    }
    if let Some(running) = &member.in_flight {
        return MemberCheck::Problem(format!(
            "PVC {name} moves with this one but runs its own action {}",
            running.text
        ));
    }
    if let Some(pending) = &member.pending {
        if pending.text != request {
            return MemberCheck::Problem(format!(
                "PVC {name} moves with this one but has its own request {} pending",
                pending.text
            ));
        }
        if name.as_str() < leader {
            return MemberCheck::LedBy(name.clone());
        }
    }
    if !spec.is_protected() {
        return MemberCheck::Problem(format!(
            "PVC {name} is used by the same application (or named in its group) but is not protected: \
             annotate it {}=true and wait for {}=Protected, or stop using it, then request again with a new ID",
            keys::PROTECT,
            keys::STATE
        ));
    }
    match refusal_for_role(verb, member.role) {
        Some(why) => MemberCheck::Problem(format!("PVC {name}: {why}")),
        None => MemberCheck::Joins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::view::annotated_pvc;

    fn member(name: &str, annotations: &[(&str, &str)]) -> PvcView {
        let mut pvc = annotated_pvc(annotations);
        pvc.metadata.name = Some(name.into());
        PvcView::read(&pvc)
    }

    const PROTECT: (&str, &str) = (keys::PROTECT, "true");

    #[test]
    fn which_members_a_group_action_takes_along() {
        let problem = |text: &str| MemberCheck::Problem(text.into());
        type Case<'a> = (&'a str, PvcView, MemberCheck);
        let cases: Vec<Case> = vec![
            (
                "protected primary",
                member("data-web-1", &[PROTECT]),
                MemberCheck::Joins,
            ),
            (
                "already held by this action (a resumed start)",
                member(
                    "data-web-1",
                    &[
                        PROTECT,
                        (keys::GROUP_ACTION, "migrate:1"),
                        (keys::GROUP_LEADER, "data-web-0"),
                    ],
                ),
                MemberCheck::Joins,
            ),
            (
                "annotated with the same request too; this PVC sorts first",
                member("data-web-1", &[PROTECT, (keys::ACTION, "migrate:1")]),
                MemberCheck::Joins,
            ),
            (
                "annotated with the same request and sorts first: it leads",
                member("data-web", &[PROTECT, (keys::ACTION, "migrate:1")]),
                MemberCheck::LedBy("data-web".into()),
            ),
            (
                "not protected",
                member("cache", &[]),
                problem(
                    "PVC cache is used by the same application (or named in its group) but is not protected: \
                     annotate it volsync-dr.io/protect=true and wait for volsync-dr.io/state=Protected, or stop \
                     using it, then request again with a new ID",
                ),
            ),
            (
                "the wrong role",
                member("data-web-1", &[PROTECT, (keys::ROLE, "secondary")]),
                problem("PVC data-web-1: migrate runs on the primary; this PVC is the secondary"),
            ),
            (
                "its own action running",
                member(
                    "data-web-1",
                    &[
                        PROTECT,
                        (keys::ACTION_PHASE, "Running"),
                        (keys::ACTION_RUNNING, "sync-now:4"),
                    ],
                ),
                problem("PVC data-web-1 moves with this one but runs its own action sync-now:4"),
            ),
            (
                "another request pending",
                member("data-web-1", &[PROTECT, (keys::ACTION, "sync-now:4")]),
                problem("PVC data-web-1 moves with this one but has its own request sync-now:4 pending"),
            ),
            (
                "held by another group action",
                member(
                    "data-web-1",
                    &[
                        PROTECT,
                        (keys::GROUP_ACTION, "sync-now:2"),
                        (keys::GROUP_LEADER, "data-web-2"),
                    ],
                ),
                problem(
                    "PVC data-web-1 moves with this one but is held by the group action sync-now:2 run from PVC data-web-2",
                ),
            ),
        ];
        for (what, view, want) in cases {
            assert_eq!(
                check_member(&view, "data-web-0", "migrate:1", Verb::Migrate),
                want,
                "{what}"
            );
        }
    }
}
