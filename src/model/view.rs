//! One PVC as a reconcile pass reads it, once: its parsed annotations, the action it runs or
//! was asked to run, its role and its marks. Every decision of the pass is made from this.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::action::{ActionError, ActionRequest, is_pending};
use super::keys;
use super::marks;
use super::progress::Progress;
use super::protection::{AnnotationErrors, ProtectionSpec};
use super::role::Role;

/// A request as written on the PVC, with what it parses to.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub text: String,
    pub parsed: Result<ActionRequest, ActionError>,
}

impl Request {
    fn read(text: &str) -> Request {
        Request {
            text: text.to_string(),
            parsed: text.parse(),
        }
    }
}

/// A group's action that holds this PVC: it acts on this volume from another member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub request: String,
    pub leader: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PvcView {
    pub namespace: String,
    pub name: String,
    /// The annotations as settings, or every problem with them.
    pub spec: Result<ProtectionSpec, AnnotationErrors>,
    /// Where an action stands (`action-*` annotations).
    pub progress: Progress,
    /// The request an action engine is in the middle of (`action-running`).
    pub in_flight: Option<Request>,
    /// The request asked for (`action`) and not finished yet (differs from `last-action`).
    pub pending: Option<Request>,
    /// The group action this PVC is a member of, while it runs from another PVC.
    pub held: Option<Hold>,
    /// The role the annotations give (a PVC without one is a primary).
    pub role: Role,
    pub deleting: bool,
    pub has_finalizer: bool,
    /// Finalizer and label both there, as the webhook stamps them.
    pub stamped: bool,
    /// VolSync's own PVC (a mover's cache or a restore target): never ours.
    pub volsync_owned: bool,
}

impl PvcView {
    pub fn read(pvc: &PersistentVolumeClaim) -> PvcView {
        let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
        let progress = Progress::read(&annotations);
        let spec = ProtectionSpec::parse(&annotations);
        let action = annotations.get(keys::ACTION).map(String::as_str);
        let last_action = annotations.get(keys::LAST_ACTION).map(String::as_str);
        let pending = action.filter(|_| is_pending(action, last_action)).map(Request::read);
        let role = spec.as_ref().ok().and_then(|s| s.role).unwrap_or(Role::Primary);
        PvcView {
            namespace: pvc.metadata.namespace.clone().unwrap_or_default(),
            name: pvc.metadata.name.clone().unwrap_or_default(),
            in_flight: progress.in_flight().map(Request::read),
            progress,
            spec,
            pending,
            held: annotations
                .get(keys::GROUP_ACTION)
                .zip(annotations.get(keys::GROUP_LEADER))
                .map(|(request, leader)| Hold {
                    request: request.clone(),
                    leader: leader.clone(),
                }),
            role,
            deleting: pvc.metadata.deletion_timestamp.is_some(),
            has_finalizer: marks::has_finalizer(&pvc.metadata),
            stamped: marks::is_stamped(&pvc.metadata),
            volsync_owned: marks::is_volsync_owned(&pvc.metadata),
        }
    }

    /// Whether an action is in flight or asked for and not finished: then a step may create,
    /// delete or scale, and the pass must work from the PVC as it is now, not a cached copy.
    pub fn concerns_an_action(&self) -> bool {
        self.in_flight.is_some() || self.pending.is_some()
    }

    /// The request an action pass works on: the one in flight, else the pending one.
    pub fn request(&self) -> Option<&Request> {
        self.in_flight.as_ref().or(self.pending.as_ref())
    }
}

/// A PVC `apps/db` with these annotations, for tests of decisions made from a view.
#[cfg(test)]
pub(crate) fn annotated_pvc(annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
    let mut p = PersistentVolumeClaim::default();
    p.metadata.namespace = Some("apps".into());
    p.metadata.name = Some("db".into());
    p.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::action::Verb;

    fn pvc(annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        annotated_pvc(annotations)
    }

    #[test]
    fn reads_requests_once_with_what_they_parse_to() {
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("nothing asked", vec![], None, None),
            ("asked", vec![(keys::ACTION, "migrate:1")], None, Some("migrate:1")),
            (
                "finished",
                vec![(keys::ACTION, "migrate:1"), (keys::LAST_ACTION, "migrate:1")],
                None,
                None,
            ),
            (
                "running, and a newer one asked",
                vec![
                    (keys::ACTION, "migrate:2"),
                    (keys::LAST_ACTION, "migrate:1"),
                    (keys::ACTION_PHASE, "Running"),
                    (keys::ACTION_RUNNING, "sync-now:1"),
                ],
                Some("sync-now:1"),
                Some("migrate:2"),
            ),
            (
                "a running record without the Running phase is not in flight",
                vec![(keys::ACTION_PHASE, "Failed"), (keys::ACTION_RUNNING, "sync-now:1")],
                None,
                None,
            ),
        ];
        for (case, annotations, in_flight, pending) in cases {
            let view = PvcView::read(&pvc(&annotations));
            assert_eq!(view.in_flight.as_ref().map(|r| r.text.as_str()), in_flight, "{case}");
            assert_eq!(view.pending.as_ref().map(|r| r.text.as_str()), pending, "{case}");
            assert_eq!(
                view.concerns_an_action(),
                in_flight.is_some() || pending.is_some(),
                "{case}"
            );
            assert_eq!(view.request().map(|r| r.text.as_str()), in_flight.or(pending), "{case}");
        }
        let running = PvcView::read(&pvc(&[
            (keys::ACTION_PHASE, "Running"),
            (keys::ACTION_RUNNING, "failover:x"),
        ]));
        let parsed = running.in_flight.expect("in flight").parsed.expect("parses");
        assert_eq!(parsed.verb, Verb::Failover);
        let bad = PvcView::read(&pvc(&[(keys::ACTION, "explode:1")]));
        assert!(bad.pending.expect("pending").parsed.is_err());
    }

    #[test]
    fn role_marks_and_ownership() {
        let mut p = pvc(&[(keys::PROTECT, "true"), (keys::ROLE, "secondary")]);
        p.metadata.labels = Some(
            [
                (keys::PROTECTED_LABEL.to_string(), "true".to_string()),
                (keys::CREATED_BY.to_string(), keys::CREATED_BY_VOLSYNC.to_string()),
            ]
            .into(),
        );
        p.metadata.finalizers = Some(vec![keys::FINALIZER.to_string()]);
        let view = PvcView::read(&p);
        assert_eq!((view.namespace.as_str(), view.name.as_str()), ("apps", "db"));
        assert_eq!(view.role, Role::Secondary);
        assert!(view.has_finalizer && view.stamped && view.volsync_owned && !view.deleting);
        let plain = PvcView::read(&pvc(&[(keys::SCHEDULE, "not a schedule")]));
        assert_eq!(plain.role, Role::Primary);
        assert!(plain.spec.is_err());
        assert!(!plain.has_finalizer && !plain.stamped && !plain.volsync_owned);
    }
}
