//! `volsync-dr status`: every protected PVC on this cluster and its peer, read once from each
//! (the decisions are `report`'s). An unreachable peer is said on stderr; this cluster's rows
//! are still shown, which is what matters when the peer is the one that failed.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};

use crate::cli::{OutputFormat, StatusArgs};
use crate::error::{Error, Result};
use crate::report;

pub async fn run(args: &StatusArgs) -> Result<()> {
    let (local, peer, timeout) = super::connect_pair(&args.pair).await?;
    let (cluster_name, peer_name) = (&args.pair.cluster_name, &args.pair.peer_name);
    let list = |client: kube::Client| {
        let namespace = args.namespace.clone();
        async move {
            let api: Api<PersistentVolumeClaim> = match &namespace {
                Some(ns) => Api::namespaced(client, ns),
                None => Api::all(client),
            };
            let all = ListParams::default();
            super::bounded(timeout, "list PVCs", || api.list(&all))
                .await
                .map(|l| l.items)
        }
    };
    let now = jiff::Timestamp::now();
    let here = list(local)
        .await
        .map_err(|e| Error::Cluster(format!("cannot read cluster {cluster_name}: {e}")))?;
    let mut rows = report::rows(cluster_name, peer_name, &here, now);
    match list(peer.client()).await {
        Ok(there) => rows.extend(report::rows(peer_name, cluster_name, &there, now)),
        Err(e) => eprintln!(
            "warning: peer cluster {} not read: {e}; showing {} only",
            peer_name, cluster_name
        ),
    }
    let rows = report::merge(rows);
    let text = match args.output {
        OutputFormat::Table => report::table(&rows),
        OutputFormat::Json => serde_json::to_string_pretty(&rows).map_err(|e| Error::Output(e.to_string()))? + "\n",
        OutputFormat::Yaml => serde_saphyr::to_string(&rows).map_err(|e| Error::Output(e.to_string()))?,
    };
    print!("{text}");
    Ok(())
}
