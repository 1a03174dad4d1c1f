//! Workloads that use a PVC: the Deployments and StatefulSets whose pods mount it, and what
//! scaling them down and up again means. Pure: the controller lists the objects and sends the
//! patches computed here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::{Value, json};

use super::keys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Deployment,
    StatefulSet,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
        }
    }
}

/// A workload is the same application on both clusters when kind and name match.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// One workload that mounts the PVC, as the cluster shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub id: WorkloadId,
    /// `spec.replicas` (Kubernetes' default of 1 when unset).
    pub replicas: i32,
    pub ready: i32,
    /// `volsync-dr.io/replicas`: the count to restore, when recorded and valid.
    pub recorded: Option<i32>,
}

fn recorded(annotations: Option<&BTreeMap<String, String>>) -> Option<i32> {
    annotations?.get(keys::REPLICAS)?.parse().ok().filter(|n| *n >= 0)
}

fn template_mounts(spec: Option<&PodSpec>, pvc: &str) -> bool {
    spec.and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == pvc))
}

/// Which claims one workload's pods use: named in the pod template, or produced by a
/// StatefulSet's volumeClaimTemplates (`<template>-<set>-<ordinal>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub workload: WorkloadId,
    /// `spec.replicas` (1 when unset).
    pub replicas: i32,
    pub named: Vec<String>,
    /// `<template>-<set>-` for each volumeClaimTemplate.
    pub template_prefixes: Vec<String>,
}

fn named_claims(spec: Option<&PodSpec>) -> Vec<String> {
    spec.and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect()
}

impl Claims {
    pub fn of_deployment(d: &Deployment) -> Claims {
        let spec = d.spec.as_ref();
        Claims {
            workload: WorkloadId {
                kind: Kind::Deployment,
                name: d.metadata.name.clone().unwrap_or_default(),
            },
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            named: named_claims(spec.and_then(|s| s.template.spec.as_ref())),
            template_prefixes: Vec::new(),
        }
    }

    pub fn of_stateful_set(s: &StatefulSet) -> Claims {
        let name = s.metadata.name.clone().unwrap_or_default();
        let spec = s.spec.as_ref();
        let template_prefixes = spec
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .map(|t| format!("{}-{name}-", t.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        Claims {
            workload: WorkloadId {
                kind: Kind::StatefulSet,
                name,
            },
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            named: named_claims(spec.and_then(|s| s.template.spec.as_ref())),
            template_prefixes,
        }
    }

    /// Whether this workload's pods use the claim `pvc` (at any ordinal).
    pub fn uses(&self, pvc: &str) -> bool {
        self.named.iter().any(|n| n == pvc)
            || self.template_prefixes.iter().any(|prefix| {
                pvc.strip_prefix(prefix.as_str())
                    .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
            })
    }

    /// The claims its pods need when it runs `replicas` replicas: the named ones, and each
    /// template's claim for ordinals `0..replicas`.
    pub fn needed_at(&self, replicas: i32) -> Vec<String> {
        let mut needed = self.named.clone();
        for prefix in &self.template_prefixes {
            needed.extend((0..replicas.max(0)).map(|ordinal| format!("{prefix}{ordinal}")));
        }
        needed
    }
}

impl Workload {
    /// The Deployment, if its pod template mounts one of `pvcs`.
    pub fn from_deployment(d: &Deployment, pvcs: &[String]) -> Option<Workload> {
        let claims = Claims::of_deployment(d);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        Workload::using(claims, pvcs, ready, d.metadata.annotations.as_ref())
    }

    /// The StatefulSet, if its pod template mounts one of `pvcs` or one of its
    /// volumeClaimTemplates produces it.
    pub fn from_stateful_set(s: &StatefulSet, pvcs: &[String]) -> Option<Workload> {
        let claims = Claims::of_stateful_set(s);
        let ready = s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        Workload::using(claims, pvcs, ready, s.metadata.annotations.as_ref())
    }

    fn using(
        claims: Claims,
        pvcs: &[String],
        ready: i32,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Option<Workload> {
        pvcs.iter().any(|p| claims.uses(p)).then(|| Workload {
            id: claims.workload,
            replicas: claims.replicas,
            ready,
            recorded: recorded(annotations),
        })
    }

    /// Merge patch that records the running count and scales to 0, in one write so a crash
    /// cannot scale down without recording. `None` when it runs no replicas already (then
    /// whatever was recorded before stays: a resumed scale-down must not record 0).
    pub fn scale_down_patch(&self) -> Option<Value> {
        (self.replicas > 0).then(|| {
            json!({"metadata": {"annotations": {keys::REPLICAS: self.replicas.to_string()}},
                   "spec": {"replicas": 0}})
        })
    }
}

/// Merge patch that scales to `replicas` and drops the record (the count is live again).
pub fn scale_up_patch(replicas: i32) -> Value {
    json!({"metadata": {"annotations": {keys::REPLICAS: null}}, "spec": {"replicas": replicas}})
}

/// Whether a pod still uses the PVC: it names the claim and has not terminated.
pub fn pod_mounts(pod: &Pod, pvc: &str) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !finished && template_mounts(pod.spec.as_ref(), pvc)
}

/// Where the replica count of a workload being scaled up comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountFrom {
    /// The count recorded on the same workload on the cluster the application leaves (what it
    /// ran at there), else the count recorded on the workload itself. Migrate.
    SourceThenOwn,
    /// The count recorded on the workload itself when it was scaled down (what it ran at before
    /// the failure), else the count it ran at on the cluster the application leaves. Failback:
    /// the application returns home at its own size, not at the size failover started it at.
    OwnThenSource,
    /// The count recorded on the workload itself, else 1: failover cannot read the other
    /// cluster. A user may record the count on a standby workload beforehand.
    OwnOrOne,
}

/// The workloads on the target cluster that still need scaling, with the count each gets.
pub fn scale_up_targets(rule: CountFrom, target: &[Workload], source: &[Workload]) -> Vec<(WorkloadId, i32)> {
    target
        .iter()
        .filter_map(|w| {
            let from_source = source.iter().find(|s| s.id == w.id).and_then(|s| s.recorded);
            let want = match rule {
                CountFrom::SourceThenOwn => from_source.or(w.recorded),
                // Once scaled up its record is gone: running, it is done.
                CountFrom::OwnThenSource => w.recorded.or(from_source.filter(|_| w.replicas == 0)),
                CountFrom::OwnOrOne => w.recorded.or((w.replicas == 0).then_some(1)),
            }?;
            (w.replicas != want || w.recorded.is_some()).then(|| (w.id.clone(), want))
        })
        .collect()
}

/// Workloads that run on `source` (or were scaled down there by us) and have no counterpart
/// of the same kind and name on the target: the application could not start there.
pub fn missing_on_target(source: &[Workload], target: &[Workload]) -> Vec<WorkloadId> {
    source
        .iter()
        .filter(|s| s.replicas > 0 || s.recorded.is_some())
        .filter(|s| !target.iter().any(|t| t.id == s.id))
        .map(|s| s.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: Kind, name: &str, replicas: i32, recorded: Option<i32>) -> Workload {
        Workload {
            id: WorkloadId {
                kind,
                name: name.into(),
            },
            replicas,
            ready: replicas,
            recorded,
        }
    }

    fn deployment(claim: &str, replicas: Option<i32>, annotations: &[(&str, &str)]) -> Deployment {
        let a: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        serde_json::from_value(json!({
            "metadata": {"name": "app", "annotations": a},
            "spec": {"replicas": replicas, "selector": {},
                     "template": {"spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}}
        }))
        .expect("deployment")
    }

    #[test]
    fn which_workloads_mount_the_pvc() {
        let d = Workload::from_deployment(
            &deployment("data", Some(3), &[(keys::REPLICAS, "2")]),
            &["data".to_string()],
        )
        .expect("mounts");
        assert_eq!((d.replicas, d.recorded), (3, Some(2)));
        assert!(Workload::from_deployment(&deployment("other", Some(3), &[]), &["data".to_string()]).is_none());
        let unset = Workload::from_deployment(
            &deployment("data", None, &[(keys::REPLICAS, "-1")]),
            &["data".to_string()],
        )
        .expect("mounts");
        assert_eq!(
            (unset.replicas, unset.recorded),
            (1, None),
            "defaults, bad record ignored"
        );

        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "spec": {"replicas": 2, "selector": {}, "serviceName": "db", "template": {"spec": {"containers": []}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
        }))
        .expect("statefulset");
        for (pvc, mounts) in [
            ("data-db-0", true),
            ("data-db-12", true),
            ("data-db-", false),
            ("data-db-x", false),
            ("data-dbx-0", false),
            ("data", false),
        ] {
            assert_eq!(
                Workload::from_stateful_set(&set, &[pvc.to_string()]).is_some(),
                mounts,
                "{pvc}"
            );
        }
    }

    #[test]
    fn pods_that_still_mount() {
        let pod = |claim: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({"spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
                                          "status": {"phase": phase}}))
            .expect("pod")
        };
        assert!(pod_mounts(&pod("data", "Running"), "data"));
        assert!(pod_mounts(&pod("data", "Pending"), "data"));
        assert!(!pod_mounts(&pod("data", "Succeeded"), "data"));
        assert!(!pod_mounts(&pod("data", "Failed"), "data"));
        assert!(!pod_mounts(&pod("other", "Running"), "data"));
    }

    #[test]
    fn scale_down_records_once() {
        let running = w(Kind::Deployment, "app", 3, None);
        assert_eq!(
            running.scale_down_patch(),
            Some(json!({"metadata": {"annotations": {keys::REPLICAS: "3"}}, "spec": {"replicas": 0}}))
        );
        // Already down (a resumed step): nothing, so the recorded 3 is not overwritten by 0.
        assert_eq!(w(Kind::Deployment, "app", 0, Some(3)).scale_down_patch(), None);
        assert_eq!(
            scale_up_patch(3),
            json!({"metadata": {"annotations": {keys::REPLICAS: null}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn scale_up_counts() {
        let app = |r, rec| w(Kind::Deployment, "app", r, rec);
        let id = app(0, None).id;
        type Case = (CountFrom, Vec<Workload>, Vec<Workload>, Vec<(WorkloadId, i32)>);
        let cases: Vec<Case> = vec![
            // Migrate: the count the source ran at.
            (
                CountFrom::SourceThenOwn,
                vec![app(0, None)],
                vec![app(0, Some(3))],
                vec![(id.clone(), 3)],
            ),
            // Done: target at 3 with no record of its own.
            (
                CountFrom::SourceThenOwn,
                vec![app(3, None)],
                vec![app(0, Some(3))],
                vec![],
            ),
            // The target's stale record goes with the scale-up.
            (
                CountFrom::SourceThenOwn,
                vec![app(3, Some(1))],
                vec![app(0, Some(3))],
                vec![(id.clone(), 3)],
            ),
            // No count on the source: the target's own record.
            (
                CountFrom::SourceThenOwn,
                vec![app(0, Some(2))],
                vec![app(0, None)],
                vec![(id.clone(), 2)],
            ),
            // Not running anywhere and nothing recorded: left alone.
            (CountFrom::SourceThenOwn, vec![app(0, None)], vec![app(0, None)], vec![]),
            // A workload of another kind is another application.
            (
                CountFrom::SourceThenOwn,
                vec![app(0, None)],
                vec![w(Kind::StatefulSet, "app", 0, Some(3))],
                vec![],
            ),
            // Failback: its own record (it ran at 4 before the failure), not the 1 failover
            // started on the other side; without one, what ran there.
            (
                CountFrom::OwnThenSource,
                vec![app(0, Some(4))],
                vec![app(0, Some(1))],
                vec![(id.clone(), 4)],
            ),
            (
                CountFrom::OwnThenSource,
                vec![app(0, None)],
                vec![app(0, Some(3))],
                vec![(id.clone(), 3)],
            ),
            // Done: scaled up to its own count (its record removed), the source's 1 ignored.
            (
                CountFrom::OwnThenSource,
                vec![app(4, None)],
                vec![app(0, Some(1))],
                vec![],
            ),
            // Failover: own record, else 1; a running workload is left as it is.
            (
                CountFrom::OwnOrOne,
                vec![app(0, Some(4))],
                vec![],
                vec![(id.clone(), 4)],
            ),
            (CountFrom::OwnOrOne, vec![app(0, None)], vec![], vec![(id.clone(), 1)]),
            (CountFrom::OwnOrOne, vec![app(2, None)], vec![], vec![]),
        ];
        for (rule, target, source, want) in cases {
            assert_eq!(
                scale_up_targets(rule, &target, &source),
                want,
                "{rule:?} {target:?} {source:?}"
            );
        }
    }

    #[test]
    fn missing_counterparts() {
        let source = vec![
            w(Kind::Deployment, "app", 2, None),
            w(Kind::Deployment, "down", 0, Some(1)),
            w(Kind::Deployment, "idle", 0, None),
            w(Kind::StatefulSet, "db", 1, None),
        ];
        let target = vec![w(Kind::Deployment, "app", 0, None), w(Kind::Deployment, "db", 0, None)];
        let missing: Vec<String> = missing_on_target(&source, &target)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(missing, ["Deployment/down", "StatefulSet/db"]);
    }
}
