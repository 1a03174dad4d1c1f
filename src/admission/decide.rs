//! The admission decision, pure: a PVC (and its previous version) in, allow with a mutation or
//! deny with a reason out. It uses the same annotation parser as the controller, so the two
//! cannot disagree, and never calls a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::model::action::{Verb, is_pending, refusal_for_role};
use crate::model::group::GroupFacts;
use crate::model::keys;
use crate::model::marks;
use crate::model::marks::is_volsync_owned;
use crate::model::progress::Phase;
use crate::model::protection::ProtectionSpec;
use crate::model::role::Role;
use crate::model::schedule;
use crate::model::volsync::{CopyMethod, ServiceType};
use crate::plan::protect::is_restore;
use crate::plan::restore_points;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// What the instance would default, made explicit on new protected PVCs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionDefaults {
    pub service_type: ServiceType,
}

/// What to add to an admitted PVC. Empty: admit unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mutation {
    /// Annotations to set (absent ones only: what the user wrote is never overwritten).
    pub annotations: BTreeMap<String, String>,
    /// Add volsync-dr's finalizer and label (`model::marks::stamp`).
    pub stamp: bool,
}

impl Mutation {
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty() && !self.stamp
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Mutation),
    Deny(String),
}

fn annotations(pvc: &PersistentVolumeClaim) -> BTreeMap<String, String> {
    pvc.metadata.annotations.clone().unwrap_or_default()
}

/// Decide on a PVC CREATE or UPDATE. `policy` holds the annotations of a matching cluster
/// policy (applied to new PVCs only; explicit annotations win, `protect: "false"` opts out).
pub fn decide(
    operation: Operation,
    pvc: &PersistentVolumeClaim,
    old: Option<&PersistentVolumeClaim>,
    defaults: &AdmissionDefaults,
    policy: Option<&BTreeMap<String, String>>,
) -> Decision {
    if is_volsync_owned(&pvc.metadata) || is_restore(pvc) {
        return Decision::Allow(Mutation::default());
    }
    let mut mutation = Mutation::default();
    let mut effective = annotations(pvc);
    if let (Operation::Create, Some(policy)) = (operation, policy)
        && !effective.contains_key(keys::PROTECT)
    {
        for (key, value) in policy {
            if !effective.contains_key(key) {
                mutation.annotations.insert(key.clone(), value.clone());
                effective.insert(key.clone(), value.clone());
            }
        }
    }
    let spec = match ProtectionSpec::parse(&effective) {
        Ok(spec) => spec,
        Err(errors) => return Decision::Deny(errors.to_string()),
    };
    let old_annotations = old.map(annotations).unwrap_or_default();
    if let Some(reason) = refuse_action(&spec, &effective, &old_annotations) {
        return Decision::Deny(reason);
    }
    let deleting = pvc.metadata.deletion_timestamp.is_some();
    let secondary = spec.role == Some(Role::Secondary);
    if spec.is_protected() && !deleting && !secondary {
        mutation.stamp = !marks::is_stamped(&pvc.metadata);
        let explicit = [
            (keys::SCHEDULE, schedule::DEFAULT.to_string()),
            (keys::COPY_METHOD, CopyMethod::default().as_str().to_string()),
            (keys::SERVICE_TYPE, defaults.service_type.as_str().to_string()),
        ];
        for (key, value) in explicit {
            if !effective.contains_key(key) {
                mutation.annotations.insert(key.to_string(), value);
            }
        }
    }
    Decision::Allow(mutation)
}

/// Why a requested action (or a change during one) cannot be admitted, if it cannot.
fn refuse_action(
    spec: &ProtectionSpec,
    now: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
) -> Option<String> {
    let running = before.get(keys::ACTION_PHASE).and_then(|p| Phase::parse(p)) == Some(Phase::Running);
    let running_what = before.get(keys::ACTION).cloned().unwrap_or_default();
    if running && before.get(keys::PROTECT) != now.get(keys::PROTECT) {
        return Some(format!(
            "annotation {} cannot change while the action {running_what:?} runs; wait until {} is no longer Running",
            keys::PROTECT,
            keys::ACTION_PHASE
        ));
    }
    let action = spec.action.as_ref()?;
    let requested = now.get(keys::ACTION).map(String::as_str);
    let changed = requested != before.get(keys::ACTION).map(String::as_str);
    if !changed || !is_pending(requested, now.get(keys::LAST_ACTION).map(String::as_str)) {
        return None;
    }
    let refuse = |why: String| {
        Some(format!(
            "annotation {}={:?} is refused: {why}",
            keys::ACTION,
            action.to_string()
        ))
    };
    if running {
        return refuse(format!(
            "the action {running_what:?} is still running; wait until {} is no longer Running",
            keys::ACTION_PHASE
        ));
    }
    if !spec.is_protected() {
        return refuse(format!("the PVC is not protected ({} is not \"true\")", keys::PROTECT));
    }
    if let Some(why) = refusal_for_role(action.verb, spec.role.unwrap_or(Role::Primary)) {
        return refuse(why);
    }
    // A failover to a chosen point: the point must be one this PVC keeps.
    if action.verb == Verb::Failover
        && let Some(wanted) = &spec.restore_point
    {
        let kept = restore_points::parse_listed(now.get(keys::RESTORE_POINTS_KEPT).map_or("", String::as_str));
        if let Err(why) = restore_points::choose(&kept, wanted) {
            return refuse(format!("{why} (annotation {})", keys::RESTORE_POINT));
        }
    }
    None
}

/// Why a newly requested action is refused for its application group: it acts on every member,
/// and a member that is not protected cannot move (the controller would refuse it too, after
/// the request was admitted). `None`: admitted.
pub fn refuse_for_group(
    pvc: &PersistentVolumeClaim,
    old: Option<&PersistentVolumeClaim>,
    facts: &GroupFacts,
) -> Option<String> {
    let now = annotations(pvc);
    let before = old.map(annotations).unwrap_or_default();
    let requested = now.get(keys::ACTION)?;
    let changed = Some(requested) != before.get(keys::ACTION);
    if !changed || !is_pending(Some(requested), now.get(keys::LAST_ACTION).map(String::as_str)) {
        return None;
    }
    let missing = facts.unprotected_members(pvc.metadata.name.as_deref()?);
    if missing.is_empty() {
        return None;
    }
    let (them, are) = if missing.len() == 1 {
        ("it", "is")
    } else {
        ("them", "are")
    };
    Some(format!(
        "annotation {}={requested:?} is refused: it acts on the whole application, and PVC {} {are} used by the \
         same application (or named in its group) but not protected; annotate {them} {}=true and wait for {}=Protected, \
         or stop using {them}, then request again",
        keys::ACTION,
        missing.join(", "),
        keys::PROTECT,
        keys::STATE
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(annotations: &[(&str, &str)], labels: &[(&str, &str)], finalizers: &[&str]) -> PersistentVolumeClaim {
        let a: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        let l: BTreeMap<&str, &str> = labels.iter().copied().collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "n", "annotations": a, "labels": l,
                                                   "finalizers": finalizers},
                                      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .expect("pvc")
    }

    #[test]
    fn a_new_request_is_refused_while_a_member_of_its_group_is_unprotected() {
        use crate::model::group::Member;
        use crate::model::workload::Claims;
        let set: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "serviceName": "web", "template": {"spec": {"containers": []}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
        }))
        .expect("statefulset");
        let member = |name: &str| Member {
            name: name.into(),
            group: None,
        };
        let facts = GroupFacts {
            pvcs: vec![member("data-web-0"), member("data-web-1"), member("data-web-2")],
            unprotected: ["data-web-2".to_string()].into(),
            workloads: vec![Claims::of_stateful_set(&set)],
        };
        let named = |name: &str, annotations: &[(&str, &str)]| {
            let mut p = pvc(annotations, &[], &[]);
            p.metadata.name = Some(name.into());
            p
        };
        let asked = named("data-web-0", &[(keys::PROTECT, "true"), (keys::ACTION, "migrate:1")]);
        let refusal = refuse_for_group(&asked, None, &facts).expect("refused");
        assert!(
            refusal.starts_with("annotation volsync-dr.io/action=\"migrate:1\" is refused")
                && refusal.contains("PVC data-web-2 is used by the same application")
                && refusal.contains("annotate it volsync-dr.io/protect=true"),
            "{refusal}"
        );
        // The same request seen again (an unrelated update), a finished one, no request: admitted.
        assert_eq!(refuse_for_group(&asked, Some(&asked), &facts), None);
        let finished = named(
            "data-web-0",
            &[(keys::ACTION, "migrate:1"), (keys::LAST_ACTION, "migrate:1")],
        );
        assert_eq!(refuse_for_group(&finished, None, &facts), None);
        assert_eq!(refuse_for_group(&named("data-web-0", &[]), None, &facts), None);
        // A PVC alone in its group.
        let alone = named("db", &[(keys::ACTION, "migrate:1")]);
        assert_eq!(refuse_for_group(&alone, None, &facts), None);
    }

    fn defaults() -> AdmissionDefaults {
        AdmissionDefaults {
            service_type: ServiceType::NodePort,
        }
    }

    fn allow(m: &[(&str, &str)], stamp: bool) -> Decision {
        Decision::Allow(Mutation {
            annotations: m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            stamp,
        })
    }

    const DEFAULTS: &[(&str, &str)] = &[
        (keys::SCHEDULE, "*/10 * * * *"),
        (keys::COPY_METHOD, "Snapshot"),
        (keys::SERVICE_TYPE, "NodePort"),
    ];

    #[test]
    fn mutations() {
        let protected = [(keys::PROTECT, "true")];
        let full = [
            (keys::PROTECT, "true"),
            (keys::SCHEDULE, "@hourly"),
            (keys::COPY_METHOD, "Clone"),
            (keys::SERVICE_TYPE, "ClusterIP"),
        ];
        let cases: Vec<(&str, PersistentVolumeClaim, Decision)> = vec![
            ("unannotated", pvc(&[], &[], &[]), allow(&[], false)),
            ("protected, new", pvc(&protected, &[], &[]), allow(DEFAULTS, true)),
            ("explicit settings win", pvc(&full, &[], &["other"]), allow(&[], true)),
            (
                "already stamped",
                pvc(&full, &[(keys::PROTECTED_LABEL, "true")], &[keys::FINALIZER]),
                allow(&[], false),
            ),
            (
                "protect false",
                pvc(&[(keys::PROTECT, "false")], &[], &[]),
                allow(&[], false),
            ),
            (
                "secondary is left to its primary",
                pvc(&[(keys::PROTECT, "true"), (keys::ROLE, "secondary")], &[], &[]),
                allow(&[], false),
            ),
            (
                "VolSync's own PVC",
                pvc(&[(keys::PROTECT, "nonsense")], &[(keys::CREATED_BY, "volsync")], &[]),
                allow(&[], false),
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(decide(Operation::Create, &p, None, &defaults(), None), want, "{name}");
        }
        let mut deleting = pvc(&protected, &[], &[keys::FINALIZER]);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().expect("time"),
        ));
        assert_eq!(
            decide(Operation::Update, &deleting, None, &defaults(), None),
            allow(&[], false)
        );
    }

    #[test]
    fn restored_pvc_is_not_touched() {
        let mut p = pvc(&[(keys::PROTECT, "true")], &[], &[]);
        if let Some(spec) = p.spec.as_mut() {
            spec.data_source_ref = Some(k8s_openapi::api::core::v1::TypedObjectReference {
                api_group: Some("volsync.backube".into()),
                kind: "ReplicationDestination".into(),
                name: "rd-p".into(),
                namespace: None,
            });
        }
        assert_eq!(
            decide(Operation::Create, &p, None, &defaults(), None),
            allow(&[], false)
        );
    }

    #[test]
    fn bad_annotations_are_denied_with_the_parsers_message() {
        let d = decide(
            Operation::Create,
            &pvc(&[(keys::SCHEDULE, "0 */5 * * * *")], &[], &[]),
            None,
            &defaults(),
            None,
        );
        match d {
            Decision::Deny(m) => {
                assert!(m.contains("volsync-dr.io/schedule=\"0 */5 * * * *\" is invalid") && m.contains("accepted"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Protected, plus `extra`.
    fn prot(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut a = vec![(keys::PROTECT, "true")];
        a.extend_from_slice(extra);
        a
    }

    /// (name, annotations now, annotations before, refusal expected)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
    );

    fn check_refusals(cases: Vec<Case>) {
        for (name, now, before, want) in cases {
            let old = pvc(&before, &[], &[]);
            let d = decide(Operation::Update, &pvc(&now, &[], &[]), Some(&old), &defaults(), None);
            match (want, d) {
                (None, Decision::Allow(_)) => {}
                (Some(why), Decision::Deny(m)) => assert!(m.contains(why), "{name}: {m}"),
                (want, got) => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn action_refusals() {
        let cases: Vec<Case> = vec![
            (
                "failover on a primary",
                prot(&[(keys::ACTION, "failover")]),
                vec![],
                Some("failover runs on the secondary"),
            ),
            (
                "failover on a secondary",
                prot(&[(keys::ROLE, "secondary"), (keys::ACTION, "failover")]),
                vec![],
                None,
            ),
            (
                "failback on a secondary",
                prot(&[(keys::ROLE, "secondary"), (keys::ACTION, "failback:1")]),
                vec![],
                Some("failback runs on the cluster that took over"),
            ),
            (
                "failback on the primary",
                prot(&[(keys::ROLE, "primary"), (keys::ACTION, "failback:1")]),
                vec![],
                None,
            ),
            (
                "migrate on a secondary",
                prot(&[(keys::ROLE, "secondary"), (keys::ACTION, "migrate")]),
                vec![],
                Some("migrate runs on the primary"),
            ),
            (
                "unprotected",
                vec![(keys::ACTION, "sync-now")],
                vec![],
                Some("the PVC is not protected"),
            ),
            (
                "failover to a kept point",
                prot(&[
                    (keys::ROLE, "secondary"),
                    (keys::ACTION, "failover:2"),
                    (keys::RESTORE_POINT, "s2"),
                    (
                        keys::RESTORE_POINTS_KEPT,
                        "2026-12-03T09:03:00Z=s3,2026-12-03T09:02:00Z=s2",
                    ),
                ]),
                vec![],
                None,
            ),
            (
                "failover to a point that is not kept",
                prot(&[
                    (keys::ROLE, "secondary"),
                    (keys::ACTION, "failover:2"),
                    (keys::RESTORE_POINT, "s1"),
                    (
                        keys::RESTORE_POINTS_KEPT,
                        "2026-12-03T09:03:00Z=s3,2026-12-03T09:02:00Z=s2",
                    ),
                ]),
                vec![],
                Some("restore point \"s1\" does not exist; kept: s3 (2026-12-03T09:03:00Z), s2 (2026-12-03T09:02:00Z)"),
            ),
            (
                "unknown verb",
                prot(&[(keys::ACTION, "reboot")]),
                vec![],
                Some("unknown verb \"reboot\""),
            ),
        ];
        check_refusals(cases);
    }

    #[test]
    fn changes_during_a_running_action() {
        let cases: Vec<Case> = vec![
            (
                "second action while one runs",
                prot(&[(keys::ACTION, "sync-now:2"), (keys::ACTION_PHASE, "Running")]),
                vec![
                    (keys::PROTECT, "true"),
                    (keys::ACTION, "sync-now:1"),
                    (keys::ACTION_PHASE, "Running"),
                ],
                Some("\"sync-now:1\" is still running"),
            ),
            (
                "protect changed while one runs",
                vec![
                    (keys::PROTECT, "false"),
                    (keys::ACTION, "migrate"),
                    (keys::ACTION_PHASE, "Running"),
                ],
                vec![
                    (keys::PROTECT, "true"),
                    (keys::ACTION, "migrate"),
                    (keys::ACTION_PHASE, "Running"),
                ],
                Some("cannot change while the action \"migrate\" runs"),
            ),
            (
                "an unchanged, finished request is not re-judged",
                prot(&[(keys::ACTION, "failover"), (keys::LAST_ACTION, "failover")]),
                vec![
                    (keys::PROTECT, "true"),
                    (keys::ACTION, "failover"),
                    (keys::LAST_ACTION, "failover"),
                ],
                None,
            ),
            (
                "status written during a run is admitted",
                prot(&[
                    (keys::ACTION, "migrate"),
                    (keys::ACTION_PHASE, "Running"),
                    (keys::ACTION_STEP, "two"),
                ]),
                vec![
                    (keys::PROTECT, "true"),
                    (keys::ACTION, "migrate"),
                    (keys::ACTION_PHASE, "Running"),
                ],
                None,
            ),
        ];
        check_refusals(cases);
    }

    #[test]
    fn policy_applies_to_new_pvcs_and_explicit_annotations_win() {
        let policy: BTreeMap<String, String> = [
            (keys::PROTECT, "true"),
            (keys::SCHEDULE, "0 * * * *"),
            (keys::SERVICE_TYPE, "LoadBalancer"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let d = decide(
            Operation::Create,
            &pvc(&[(keys::SERVICE_TYPE, "ClusterIP")], &[], &[]),
            None,
            &defaults(),
            Some(&policy),
        );
        assert_eq!(
            d,
            allow(
                &[
                    (keys::PROTECT, "true"),
                    (keys::SCHEDULE, "0 * * * *"),
                    (keys::COPY_METHOD, "Snapshot")
                ],
                true
            )
        );
        let opted_out = decide(
            Operation::Create,
            &pvc(&[(keys::PROTECT, "false")], &[], &[]),
            None,
            &defaults(),
            Some(&policy),
        );
        assert_eq!(opted_out, allow(&[], false));
        let update = decide(
            Operation::Update,
            &pvc(&[], &[], &[]),
            Some(&pvc(&[], &[], &[])),
            &defaults(),
            Some(&policy),
        );
        assert_eq!(
            update,
            allow(&[], false),
            "policies reach existing PVCs through the watcher, not admission"
        );
    }
}
