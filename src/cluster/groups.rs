//! The webhook's read of a namespace's application groups, for a newly requested action: the
//! PVCs and the workloads' claims, each list bounded by a timeout.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::admission::GroupReader;
use crate::model::group::{GroupFacts, Member};
use crate::model::keys;
use crate::model::marks::is_volsync_owned;
use crate::model::workload::Claims;

pub struct LiveGroups {
    pub client: Client,
    /// For each list; the API server gives the webhook 10 s in all.
    pub timeout: Duration,
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {timeout:?}")),
    }
}

impl LiveGroups {
    async fn facts(&self, namespace: &str) -> Result<GroupFacts, String> {
        let params = ListParams::default();
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
        let pvcs = bounded(self.timeout, "list PVCs", pvcs.list(&params)).await?;
        let deployments = bounded(self.timeout, "list Deployments", deployments.list(&params)).await?;
        let sets = bounded(self.timeout, "list StatefulSets", sets.list(&params)).await?;
        // Application PVCs only: not VolSync's, not a copy made for another PVC.
        let application = pvcs.items.iter().filter(|p| {
            !is_volsync_owned(&p.metadata)
                && p.annotations()
                    .get(keys::PVC_NAME)
                    .is_none_or(|made_for| *made_for == p.name_any())
        });
        let mut facts = GroupFacts::default();
        for pvc in application {
            let annotations = pvc.annotations();
            if annotations.get(keys::PROTECT).map(String::as_str) != Some("true") {
                facts.unprotected.insert(pvc.name_any());
            }
            facts.pvcs.push(Member {
                name: pvc.name_any(),
                group: annotations.get(keys::GROUP).cloned(),
            });
        }
        facts.workloads = deployments
            .items
            .iter()
            .map(Claims::of_deployment)
            .chain(sets.items.iter().map(Claims::of_stateful_set))
            .collect();
        Ok(facts)
    }
}

impl GroupReader for LiveGroups {
    fn read<'a>(&'a self, namespace: &'a str) -> futures::future::BoxFuture<'a, Result<GroupFacts, String>> {
        Box::pin(async move {
            let read = self.facts(namespace).await;
            if let Err(e) = &read {
                tracing::warn!(namespace, error = %e, "cannot read the namespace's groups; the request is admitted and checked by the controller");
            }
            read
        })
    }
}
