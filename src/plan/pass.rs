//! What one reconcile pass does with a PVC, decided from its [`PvcView`] alone. Pure and
//! table-tested; `controller::reconcile` carries the decision out.

use crate::model::action::refusal_for_role;
use crate::model::keys;
use crate::model::role::Role;
use crate::model::view::PvcView;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassDecision {
    /// Not ours (VolSync's own PVC).
    Ignore,
    /// The annotations do not parse: say so, and leave everything as it is until they are
    /// fixed (no cleanup on a typo).
    ReportInvalid(String),
    /// Run (or resume, or start) the action: it owns the PVC and its objects until it ends.
    RunAction,
    /// The PVC is being deleted while an action runs: end the action as failed. The pass that
    /// follows releases the protection.
    AbandonAction,
    /// Finish the pending request as refused, with why; nothing on the clusters changes.
    Refuse { request: String, why: String },
    /// A secondary holds no finalizer (the primary drives its cleanup): remove one left from
    /// when this side was primary.
    ReleaseSecondaryFinalizer,
    /// The secondary side: show the local destination's status on the PVC.
    MirrorSecondary,
    /// Protected but the webhook's finalizer and label are missing: add them first.
    Stamp,
    /// Protected: make both clusters hold the pair's objects, and report.
    Protect,
    /// No longer protected (or being deleted) and still holding the finalizer: remove the
    /// objects on both clusters, then the finalizer.
    Release,
    /// Another member runs an action for this volume's group: leave the volume to it. The
    /// pass checks that the leader still runs it (else the hold is stale and is removed).
    HeldByGroup { leader: String, request: String },
    /// A primary fenced after its peer took over: keep it from syncing and say so, until a
    /// failback from the peer returns the application here.
    Fenced,
    /// Nothing of ours here.
    Nothing,
}

pub fn decide(view: &PvcView) -> PassDecision {
    if view.volsync_owned {
        return PassDecision::Ignore;
    }
    let spec = match &view.spec {
        Ok(spec) => spec,
        Err(errors) => return PassDecision::ReportInvalid(errors.to_string()),
    };
    // An action in flight owns the PVC whatever the annotations say now (its own steps change
    // the role); protection waits until it has finished.
    if view.in_flight.is_some() {
        return if view.deleting {
            PassDecision::AbandonAction
        } else {
            PassDecision::RunAction
        };
    }
    if let Some(hold) = &view.held {
        // The same request on several members: the group's action covers this one too.
        if let Some(request) = view.pending.as_ref().filter(|p| p.text != hold.request) {
            return PassDecision::Refuse {
                request: request.text.clone(),
                why: format!(
                    "this PVC is part of the group action {} run from PVC {}, which acts on it too; \
                     request again with a new ID once that has finished",
                    hold.request, hold.leader
                ),
            };
        }
        return PassDecision::HeldByGroup {
            leader: hold.leader.clone(),
            request: hold.request.clone(),
        };
    }
    if let Some(request) = view.pending.as_ref().filter(|_| !view.deleting) {
        let refusal = match (&request.parsed, spec.is_protected()) {
            (_, false) => Some(format!("the PVC is not protected ({} is not \"true\")", keys::PROTECT)),
            (Ok(parsed), true) => refusal_for_role(parsed.verb, view.role),
            // The engine finishes an unreadable request as failed, with the parse error.
            (Err(_), true) => None,
        };
        if let Some(why) = refusal {
            return PassDecision::Refuse {
                request: request.text.clone(),
                why,
            };
        }
        // A primary gets its finalizer and label first (below); the action starts after.
        if view.role == Role::Secondary || view.stamped {
            return PassDecision::RunAction;
        }
    }
    if spec.role == Some(Role::Fenced) && spec.is_protected() && !view.deleting {
        return PassDecision::Fenced;
    }
    if spec.role == Some(Role::Secondary) {
        return if view.has_finalizer {
            PassDecision::ReleaseSecondaryFinalizer
        } else {
            PassDecision::MirrorSecondary
        };
    }
    if spec.is_protected() && !view.deleting {
        return if view.stamped {
            PassDecision::Protect
        } else {
            PassDecision::Stamp
        };
    }
    if view.has_finalizer {
        PassDecision::Release
    } else {
        PassDecision::Nothing
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[derive(Clone, Copy)]
    struct Marks {
        finalizer: bool,
        label: bool,
        deleting: bool,
        volsync: bool,
    }

    const NONE: Marks = Marks {
        finalizer: false,
        label: false,
        deleting: false,
        volsync: false,
    };
    const STAMPED: Marks = Marks {
        finalizer: true,
        label: true,
        ..NONE
    };

    fn view(annotations: &[(&str, &str)], marks: Marks) -> PvcView {
        let mut p = crate::model::view::annotated_pvc(annotations);
        let mut labels = std::collections::BTreeMap::new();
        if marks.label {
            labels.insert(keys::PROTECTED_LABEL.to_string(), "true".to_string());
        }
        if marks.volsync {
            labels.insert(keys::CREATED_BY.to_string(), keys::CREATED_BY_VOLSYNC.to_string());
        }
        p.metadata.labels = Some(labels);
        p.metadata.finalizers = marks.finalizer.then(|| vec![keys::FINALIZER.to_string()]);
        if marks.deleting {
            p.metadata.deletion_timestamp = Some(Time("2026-12-01T00:00:00Z".parse().expect("time")));
        }
        PvcView::read(&p)
    }

    fn refuse(request: &str, why: &str) -> PassDecision {
        PassDecision::Refuse {
            request: request.into(),
            why: why.into(),
        }
    }

    const PROTECT: (&str, &str) = (keys::PROTECT, "true");
    const SECONDARY: (&str, &str) = (keys::ROLE, "secondary");
    const RUNNING: [(&str, &str); 2] = [(keys::ACTION_PHASE, "Running"), (keys::ACTION_RUNNING, "migrate:1")];
    const DELETING: Marks = Marks {
        deleting: true,
        ..STAMPED
    };

    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Marks, PassDecision);

    fn check(cases: Vec<Case>) {
        for (case, annotations, marks, want) in cases {
            let got = decide(&view(&annotations, marks));
            match (&got, &want) {
                (PassDecision::ReportInvalid(message), PassDecision::ReportInvalid(_)) => {
                    assert!(message.contains("volsync-dr.io/"), "{case}: {message}")
                }
                _ => assert_eq!(got, want, "{case}"),
            }
        }
    }

    #[test]
    fn actions_and_invalid_annotations() {
        let not_protected = "the PVC is not protected (volsync-dr.io/protect is not \"true\")";
        check(vec![
            (
                "VolSync's own PVC",
                vec![PROTECT],
                Marks { volsync: true, ..NONE },
                PassDecision::Ignore,
            ),
            (
                "a bad annotation",
                vec![PROTECT, (keys::SCHEDULE, "often")],
                STAMPED,
                PassDecision::ReportInvalid(String::new()),
            ),
            (
                "action in flight",
                [vec![PROTECT], RUNNING.to_vec()].concat(),
                STAMPED,
                PassDecision::RunAction,
            ),
            (
                "action in flight, even after protect was removed",
                RUNNING.to_vec(),
                STAMPED,
                PassDecision::RunAction,
            ),
            (
                "action in flight on a PVC being deleted",
                [vec![PROTECT], RUNNING.to_vec()].concat(),
                DELETING,
                PassDecision::AbandonAction,
            ),
            (
                "request on an unprotected PVC",
                vec![(keys::ACTION, "migrate:1")],
                NONE,
                refuse("migrate:1", not_protected),
            ),
            (
                "request the role cannot run",
                vec![PROTECT, SECONDARY, (keys::ACTION, "migrate:1")],
                NONE,
                refuse("migrate:1", "migrate runs on the primary; this PVC is the secondary"),
            ),
            (
                "request on a stamped primary",
                vec![PROTECT, (keys::ACTION, "migrate:1")],
                STAMPED,
                PassDecision::RunAction,
            ),
            (
                "request on a secondary",
                vec![PROTECT, SECONDARY, (keys::ACTION, "failover:1")],
                NONE,
                PassDecision::RunAction,
            ),
            (
                "unreadable request in flight: the engine fails it with the parse error",
                vec![
                    PROTECT,
                    (keys::ACTION_PHASE, "Running"),
                    (keys::ACTION_RUNNING, "explode"),
                ],
                STAMPED,
                PassDecision::RunAction,
            ),
            (
                "unreadable request asked: an annotation error",
                vec![PROTECT, (keys::ACTION, "explode")],
                STAMPED,
                PassDecision::ReportInvalid(String::new()),
            ),
            (
                "request on a primary the webhook missed: stamp first",
                vec![PROTECT, (keys::ACTION, "migrate:1")],
                NONE,
                PassDecision::Stamp,
            ),
            (
                "finished request",
                vec![PROTECT, (keys::ACTION, "migrate:1"), (keys::LAST_ACTION, "migrate:1")],
                STAMPED,
                PassDecision::Protect,
            ),
            (
                "request on a PVC being deleted is not started",
                vec![PROTECT, (keys::ACTION, "migrate:1")],
                DELETING,
                PassDecision::Release,
            ),
        ]);
    }

    #[test]
    fn protection_branches() {
        check(vec![
            (
                "secondary with a finalizer left from being primary",
                vec![PROTECT, SECONDARY],
                STAMPED,
                PassDecision::ReleaseSecondaryFinalizer,
            ),
            (
                "secondary",
                vec![PROTECT, SECONDARY],
                NONE,
                PassDecision::MirrorSecondary,
            ),
            ("protected, stamped", vec![PROTECT], STAMPED, PassDecision::Protect),
            (
                "protected, label only",
                vec![PROTECT],
                Marks { label: true, ..NONE },
                PassDecision::Stamp,
            ),
            ("protected, unstamped", vec![PROTECT], NONE, PassDecision::Stamp),
            (
                "protected, being deleted",
                vec![PROTECT],
                DELETING,
                PassDecision::Release,
            ),
            (
                "unprotected with the finalizer",
                vec![(keys::PROTECT, "false")],
                STAMPED,
                PassDecision::Release,
            ),
            ("unprotected", vec![], NONE, PassDecision::Nothing),
            (
                "fenced",
                vec![PROTECT, (keys::ROLE, "fenced")],
                STAMPED,
                PassDecision::Fenced,
            ),
            (
                "fenced, unprotected: released",
                vec![(keys::PROTECT, "false"), (keys::ROLE, "fenced")],
                STAMPED,
                PassDecision::Release,
            ),
            (
                "fenced, a request: refused",
                vec![PROTECT, (keys::ROLE, "fenced"), (keys::ACTION, "migrate:2")],
                STAMPED,
                refuse(
                    "migrate:2",
                    "this PVC is fenced (its peer took over in a failover while it was away; see \
                     volsync-dr.io/fenced): migrate cannot run here; request failback on the peer to return \
                     the application here",
                ),
            ),
        ]);
    }

    #[test]
    fn a_member_held_by_its_group_action() {
        let held = [
            PROTECT,
            (keys::GROUP_ACTION, "migrate:1"),
            (keys::GROUP_LEADER, "data-web-0"),
        ];
        let left_to_it = PassDecision::HeldByGroup {
            leader: "data-web-0".into(),
            request: "migrate:1".into(),
        };
        check(vec![
            (
                "held: left to the group's action",
                held.to_vec(),
                STAMPED,
                left_to_it.clone(),
            ),
            (
                "held, even when swapped to secondary meanwhile",
                [held.to_vec(), vec![SECONDARY]].concat(),
                NONE,
                left_to_it.clone(),
            ),
            ("held while being deleted", held.to_vec(), DELETING, left_to_it),
            (
                "a request on a held member",
                [held.to_vec(), vec![(keys::ACTION, "failover:2")]].concat(),
                STAMPED,
                refuse(
                    "failover:2",
                    "this PVC is part of the group action migrate:1 run from PVC data-web-0, which acts on it too; \
                     request again with a new ID once that has finished",
                ),
            ),
            (
                "the same request on a held member: covered by the group's action",
                [held.to_vec(), vec![(keys::ACTION, "migrate:1")]].concat(),
                STAMPED,
                PassDecision::HeldByGroup {
                    leader: "data-web-0".into(),
                    request: "migrate:1".into(),
                },
            ),
            (
                "a leader's own hold annotation half-written (no leader): not held",
                vec![PROTECT, (keys::GROUP_ACTION, "migrate:1")],
                STAMPED,
                PassDecision::Protect,
            ),
        ]);
    }
}
