//! `volsync-dr status`: every protected PVC on this cluster and its peer, read once from each
//! (the decisions are `report`'s), with the application groups they move in. An unreachable
//! peer is said on stderr; this cluster's rows are still shown, which is what matters when the
//! peer is the one that failed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, ListParams};

use crate::cli::{OutputFormat, StatusArgs};
use crate::error::{Error, Result};
use crate::model::workload::Claims;
use crate::report;

fn api<K>(client: kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// One cluster's PVCs and the claims of its workloads by namespace (empty, with a warning, when
/// the workloads cannot be read: the rows are shown without groups).
async fn read(
    client: kube::Client,
    namespace: Option<&str>,
    timeout: Duration,
    cluster: &str,
) -> std::result::Result<(Vec<PersistentVolumeClaim>, BTreeMap<String, Vec<Claims>>), String> {
    let all = ListParams::default();
    let pvcs: Api<PersistentVolumeClaim> = api(client.clone(), namespace);
    let pvcs = super::bounded(timeout, "list PVCs", || pvcs.list(&all))
        .await
        .map_err(|e| e.to_string())?
        .items;
    let deployments: Api<Deployment> = api(client.clone(), namespace);
    let sets: Api<StatefulSet> = api(client, namespace);
    let listed = async {
        let d = super::bounded(timeout, "list Deployments", || deployments.list(&all)).await?;
        let s = super::bounded(timeout, "list StatefulSets", || sets.list(&all)).await?;
        Ok::<_, String>((d.items, s.items))
    };
    let mut workloads: BTreeMap<String, Vec<Claims>> = BTreeMap::new();
    match listed.await {
        Ok((d, s)) => {
            let by_ns = d
                .iter()
                .map(|d| (d.metadata.namespace.clone(), Claims::of_deployment(d)))
                .chain(
                    s.iter()
                        .map(|s| (s.metadata.namespace.clone(), Claims::of_stateful_set(s))),
                );
            for (ns, claims) in by_ns {
                workloads.entry(ns.unwrap_or_default()).or_default().push(claims);
            }
        }
        Err(e) => eprintln!("warning: workloads on cluster {cluster} not read ({e}); groups are not shown"),
    }
    Ok((pvcs, workloads))
}

/// When each PVC's key was made on one cluster, from its key Secrets' metadata (never their
/// data); empty, with a warning, when they cannot be listed (the KEY AGE column shows `-`).
async fn key_times(
    client: kube::Client,
    namespace: Option<&str>,
    timeout: Duration,
    cluster: &str,
) -> BTreeMap<(String, String), jiff::Timestamp> {
    let secrets: Api<Secret> = api(client, namespace);
    let ours = ListParams::default().labels(&crate::model::names::managed_selector());
    match super::bounded(timeout, "list key Secrets", || secrets.list_metadata(&ours)).await {
        Ok(list) => list
            .items
            .iter()
            .filter_map(|s| {
                let pvc = s
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(crate::model::keys::PVC_NAME)?
                    .clone();
                let made = crate::plan::key_created(&s.metadata)?;
                Some(((s.metadata.namespace.clone().unwrap_or_default(), pvc), made))
            })
            .collect(),
        Err(e) => {
            eprintln!("warning: key Secrets on cluster {cluster} not read ({e}); key ages are not shown");
            BTreeMap::new()
        }
    }
}

pub async fn run(args: &StatusArgs) -> Result<()> {
    let (local, peer, timeout) = super::connect_pair(&args.pair).await?;
    let (cluster_name, peer_name) = (&args.pair.cluster_name, &args.pair.peer_name);
    let namespace = args.namespace.as_deref();
    let now = jiff::Timestamp::now();
    let (here, here_workloads) = read(local.clone(), namespace, timeout, cluster_name)
        .await
        .map_err(|e| Error::Cluster(format!("cannot read cluster {cluster_name}: {e}")))?;
    let mut rows = report::rows(cluster_name, peer_name, &here, now);
    let here_keys = key_times(local.clone(), namespace, timeout, cluster_name).await;
    rows = report::with_key_ages(rows, cluster_name, &here_keys, now);
    let mut groups = report::groups(cluster_name, &here, &here_workloads, now);
    match read(peer.client(), namespace, timeout, peer_name).await {
        Ok((there, there_workloads)) => {
            let there_keys = key_times(peer.client(), namespace, timeout, peer_name).await;
            rows.extend(report::with_key_ages(
                report::rows(peer_name, cluster_name, &there, now),
                peer_name,
                &there_keys,
                now,
            ));
            groups.extend(report::groups(peer_name, &there, &there_workloads, now));
        }
        Err(e) => eprintln!(
            "warning: peer cluster {} not read: {e}; showing {} only",
            peer_name, cluster_name
        ),
    }
    let rows = report::with_groups(report::merge(rows), &groups);
    let text = match args.output {
        OutputFormat::Table => {
            let tables = [
                report::table(&rows),
                report::group_table(&groups),
                report::kept_table(&rows),
                report::restore_point_table(&rows),
            ];
            tables
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        }
        OutputFormat::Json => serde_json::to_string_pretty(&rows).map_err(|e| Error::Output(e.to_string()))? + "\n",
        OutputFormat::Yaml => serde_saphyr::to_string(&rows).map_err(|e| Error::Output(e.to_string()))?,
    };
    print!("{text}");
    Ok(())
}
