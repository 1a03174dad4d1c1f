//! `volsync-dr run`'s start-up checks: connect to this cluster and read, bounded, what it must
//! have (VolSync, the Lease's namespace, the access volsync-dr needs); `report::startup` judges.
//! Each failure is one line that names what is wrong and what to do, never a debug dump. The
//! peer is not checked here: a peer that is down is an outage volsync-dr runs through.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, Config};

use super::bounded;
use super::doctor::{denied, served_crds};
use crate::cluster::peer::plain;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::report::doctor::{REQUIRED_ACCESS, read_certificate};
use crate::report::startup::{LeaseFacts, StartFacts, certificate_current, verdict};

/// Longest each start-up read may take.
const START_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What leader election does with its Lease (the Role volsync-dr-leader-election).
const LEASE_ACCESS: &[(&str, &str, &[&str])] = &[("coordination.k8s.io", "leases", &["get", "create", "patch"])];

/// This cluster's client, once its API server has answered.
pub(super) async fn connect_local() -> Result<Client> {
    let config = Config::infer().await.map_err(|e| {
        Error::Cluster(format!(
            "no cluster to connect to: not in a pod with a ServiceAccount, and no usable kubeconfig ({}): set \
             KUBECONFIG to a kubeconfig file, or run volsync-dr in the cluster",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).map_err(|e| {
        Error::Cluster(format!(
            "cannot make a client for this cluster's API server at {url}: {}",
            plain(&e)
        ))
    })?;
    let answered = tokio::time::timeout(START_CHECK_TIMEOUT, client.apiserver_version()).await;
    let problem = match answered {
        Ok(Ok(_)) => return Ok(client),
        Ok(Err(e)) => plain(&e),
        Err(_) => format!("no answer within {} s", START_CHECK_TIMEOUT.as_secs()),
    };
    Err(Error::Cluster(format!(
        "cannot reach this cluster's API server at {url} ({problem}): check that it runs and that KUBECONFIG (or \
         the pod's ServiceAccount) points at it"
    )))
}

/// Read what this cluster must have and judge it.
pub(super) async fn check_local(client: &Client, config: &RunConfig) -> Result<()> {
    let timeout = START_CHECK_TIMEOUT;
    let read = |e: String| Error::Cluster(format!("start-up check on cluster {}: {e}", config.cluster_name));
    let crds = served_crds(client, timeout).await.map_err(read)?;
    let mut refused = denied(client, timeout, REQUIRED_ACCESS, None).await.map_err(read)?;
    let lease = match &config.leader {
        None => None,
        Some(leader) => {
            let namespace = config.own_namespace.as_str();
            let named = ListParams::default().fields(&format!("metadata.name={namespace}"));
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let found = bounded(timeout, "list namespaces", || namespaces.list(&named))
                .await
                .map_err(read)?;
            refused.extend(
                denied(client, timeout, LEASE_ACCESS, Some(namespace))
                    .await
                    .map_err(read)?,
            );
            Some(LeaseFacts {
                namespace: namespace.to_string(),
                name: leader.lease_name.clone(),
                namespace_exists: !found.items.is_empty(),
            })
        }
    };
    let facts = StartFacts {
        cluster: config.cluster_name.clone(),
        crds,
        denied: refused,
        lease,
    };
    verdict(&facts).map_err(Error::Cluster)
}

/// The webhook certificate has not expired (`tls::load` has read it already: this only dates it).
pub(super) fn check_certificate(path: &Path) -> Result<()> {
    let Some((not_after, _)) = std::fs::read(path).ok().and_then(|pem| read_certificate(&pem).ok()) else {
        return Ok(());
    };
    let now = jiff::Timestamp::now().as_second();
    certificate_current(&path.display().to_string(), not_after, now).map_err(Error::Cluster)
}
