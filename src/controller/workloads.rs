//! The application's workloads on one cluster: which Deployments and StatefulSets mount the
//! PVC, which pods still use it, and the scale writes (computed in `model::workload`).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::clusters::ClusterRef;
use super::error::Error;
use crate::model::group::{ClaimState, Member, members_with};
use crate::model::keys;
use crate::model::workload::{Claims, Kind, Workload, WorkloadId, pod_mounts};

/// What uses a group's PVCs on one cluster.
pub struct Usage {
    pub workloads: Vec<Workload>,
    /// The claims of each workload, in the same order.
    pub claims: Vec<Claims>,
    /// Pods that still mount one of them.
    pub pods: Vec<String>,
}

/// The workloads and pods that use any of `pvcs` (an application group) on one cluster.
pub async fn usage(on: &ClusterRef, namespace: &str, pvcs: &[String]) -> Result<Usage, Error> {
    let params = Default::default();
    let deployments = on
        .call("list Deployments", on.api::<Deployment>(namespace).list(&params))
        .await?;
    let sets = on
        .call("list StatefulSets", on.api::<StatefulSet>(namespace).list(&params))
        .await?;
    let pods = on.call("list Pods", on.api::<Pod>(namespace).list(&params)).await?;
    let mut found: Vec<(Workload, Claims)> = deployments
        .items
        .iter()
        .filter_map(|d| Workload::from_deployment(d, pvcs).map(|w| (w, Claims::of_deployment(d))))
        .chain(
            sets.items
                .iter()
                .filter_map(|s| Workload::from_stateful_set(s, pvcs).map(|w| (w, Claims::of_stateful_set(s)))),
        )
        .collect();
    found.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let (workloads, claims) = found.into_iter().unzip();
    let pods = pods
        .items
        .iter()
        .filter(|p| pvcs.iter().any(|pvc| pod_mounts(p, pvc)))
        .map(|p| p.name_any())
        .collect();
    Ok(Usage {
        workloads,
        claims,
        pods,
    })
}

/// The application PVCs of a namespace: not VolSync's, and not an object made for another PVC
/// (a failover's restored copy names the PVC it was made for).
async fn application_pvcs(on: &ClusterRef, namespace: &str) -> Result<Vec<PersistentVolumeClaim>, Error> {
    let list = on
        .call(
            "list PVCs",
            on.api::<PersistentVolumeClaim>(namespace).list(&Default::default()),
        )
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| !crate::model::marks::is_volsync_owned(&p.metadata))
        .filter(|p| {
            p.annotations()
                .get(keys::PVC_NAME)
                .is_none_or(|made_for| *made_for == p.name_any())
        })
        .collect())
}

/// A namespace as group membership sees it: its application PVCs and its workloads' claims.
pub struct NamespaceVolumes {
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub workloads: Vec<Claims>,
}

impl NamespaceVolumes {
    pub async fn read(on: &ClusterRef, namespace: &str) -> Result<NamespaceVolumes, Error> {
        let pvcs = application_pvcs(on, namespace).await?;
        let params = Default::default();
        let deployments = on
            .call("list Deployments", on.api::<Deployment>(namespace).list(&params))
            .await?;
        let sets = on
            .call("list StatefulSets", on.api::<StatefulSet>(namespace).list(&params))
            .await?;
        let workloads = deployments
            .items
            .iter()
            .map(Claims::of_deployment)
            .chain(sets.items.iter().map(Claims::of_stateful_set))
            .collect();
        Ok(NamespaceVolumes { pvcs, workloads })
    }

    fn members(&self) -> Vec<Member> {
        self.pvcs
            .iter()
            .map(|p| Member {
                name: p.name_any(),
                group: p.annotations().get(keys::GROUP).cloned(),
            })
            .collect()
    }

    /// The PVCs that move with `pvc` (itself included, sorted): `model::group::members_with`.
    pub fn group_of(&self, pvc: &str) -> Vec<String> {
        members_with(pvc, &self.members(), &self.workloads)
    }

    /// Every group with a protected PVC, each once, in name order.
    pub fn protected_groups(&self) -> Vec<Vec<String>> {
        let members = self.members();
        let mut protected: Vec<&PersistentVolumeClaim> = self
            .pvcs
            .iter()
            .filter(|p| p.annotations().get(keys::PROTECT).is_some_and(|v| v == "true"))
            .collect();
        protected.sort_by_key(|p| p.name_any());
        let mut groups: Vec<Vec<String>> = Vec::new();
        for pvc in protected {
            let name = pvc.name_any();
            if groups.iter().any(|g| g.contains(&name)) {
                continue;
            }
            groups.push(members_with(&name, &members, &self.workloads));
        }
        groups
    }
}

/// The PVCs that move with `pvc` on this cluster (itself included, sorted).
pub async fn group_of(on: &ClusterRef, namespace: &str, pvc: &str) -> Result<Vec<String>, Error> {
    Ok(NamespaceVolumes::read(on, namespace).await?.group_of(pvc))
}

/// Every application PVC of the namespace on one cluster, as the scale-up invariant sees it.
pub async fn claim_states(on: &ClusterRef, namespace: &str) -> Result<Vec<ClaimState>, Error> {
    Ok(application_pvcs(on, namespace)
        .await?
        .iter()
        .map(|p| {
            let annotations = p.annotations();
            ClaimState {
                name: p.name_any(),
                protected: annotations.get(keys::PROTECT).is_some_and(|v| v == "true"),
                role: annotations.get(keys::ROLE).cloned(),
            }
        })
        .collect())
}

/// Apply a scale patch (JSON merge) to one workload.
pub async fn patch(on: &ClusterRef, namespace: &str, id: &WorkloadId, body: &Value) -> Result<(), Error> {
    let params = PatchParams {
        field_manager: Some(keys::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let what = format!("scale {id}");
    match id.kind {
        Kind::Deployment => {
            on.call(
                &what,
                on.api::<Deployment>(namespace)
                    .patch(&id.name, &params, &Patch::Merge(body)),
            )
            .await?;
        }
        Kind::StatefulSet => {
            on.call(
                &what,
                on.api::<StatefulSet>(namespace)
                    .patch(&id.name, &params, &Patch::Merge(body)),
            )
            .await?;
        }
    }
    Ok(())
}
