//! The application's workloads on one cluster: which Deployments and StatefulSets mount the
//! PVC, which pods still use it, and the scale writes (computed in `model::workload`).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::clusters::ClusterRef;
use super::error::Error;
use crate::model::keys;
use crate::model::workload::{Kind, Workload, WorkloadId, pod_mounts};

/// What uses the PVC on one cluster.
pub struct Usage {
    pub workloads: Vec<Workload>,
    /// Pods that still mount it.
    pub pods: Vec<String>,
}

pub async fn usage(on: &ClusterRef, namespace: &str, pvc: &str) -> Result<Usage, Error> {
    let params = Default::default();
    let deployments = on
        .call("list Deployments", on.api::<Deployment>(namespace).list(&params))
        .await?;
    let sets = on
        .call("list StatefulSets", on.api::<StatefulSet>(namespace).list(&params))
        .await?;
    let pods = on.call("list Pods", on.api::<Pod>(namespace).list(&params)).await?;
    let mut workloads: Vec<Workload> = deployments
        .items
        .iter()
        .filter_map(|d| Workload::from_deployment(d, pvc))
        .chain(sets.items.iter().filter_map(|s| Workload::from_stateful_set(s, pvc)))
        .collect();
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    let pods = pods
        .items
        .iter()
        .filter(|p| pod_mounts(p, pvc))
        .map(|p| p.name_any())
        .collect();
    Ok(Usage { workloads, pods })
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
