//! Connections to the clusters: the local one the usual way, the peer from its kubeconfig.

pub mod groups;
pub mod leader;
pub mod peer;
pub mod policies;

use kube::Client;

/// This cluster: in-cluster service account, else KUBECONFIG or ~/.kube/config.
pub async fn local_client() -> Result<Client, kube::Error> {
    Client::try_default().await
}
